"""The blocker's side of cluster sharing: what it needs from a cluster link, and what it offers.

The blocker never imports the cluster package. The daemon hands the running cluster service to
``BlockerService.bind``; it is used only through ``ClusterLink``. Rows from other nodes come in
as anything shaped like ``RemoteRow`` (structural typing, no shared import).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol


class RemoteRow(Protocol):
    """One ban or unban decided by another node, already checked for shape by the cluster."""

    @property
    def id(self) -> int: ...
    @property
    def action(self) -> str: ...  # ban | unban
    @property
    def ip(self) -> str: ...  # canonical address or network
    @property
    def rule(self) -> str: ...
    @property
    def reason(self) -> str: ...  # for an unban: why (expired, cli, ...)
    @property
    def hits(self) -> int: ...
    @property
    def decided(self) -> float: ...  # epoch seconds
    @property
    def expires(self) -> float | None: ...  # absolute epoch seconds; None = permanent
    @property
    def node(self) -> str: ...


class RemoteSink(Protocol):
    """What the blocker offers the cluster link (``BlockerService`` implements it)."""

    def apply_remote(self, rows: Sequence[RemoteRow]) -> None:
        """Enforce other nodes' bans and unbans (after this node's own trust checks)."""

    def remote_hits(self, hits: Sequence[tuple[str, str, float]]) -> None:
        """(rule, ip, log time) hits other nodes saw: they join this node's counts."""


class ClusterLink(Protocol):
    """What the blocker needs from the cluster service. Every call returns at once: publishing
    only queues (the store may be away); nothing here may stall the log follower."""

    node: str

    def attach(self, sink: RemoteSink) -> None:
        """Start applying other nodes' rows to ``sink`` (called at the end of start())."""

    def detach(self) -> None:
        """Stop applying rows (the blocker is stopping)."""

    def publish_ban(self, ip: str, rule: str, reason: str, hits: int, decided: float,
                    expires: float | None) -> None:
        """Queue a ban this node decided."""

    def publish_unban(self, ip: str, why: str, decided: float) -> None:
        """Queue an unban (why: expired, cli); it lifts bans decided up to ``decided``."""

    def publish_hit(self, rule: str, ip: str, when: float) -> None:
        """Queue a rule hit seen in this node's own log."""
