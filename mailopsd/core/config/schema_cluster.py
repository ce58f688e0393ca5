"""[cluster]: several MX hosts share bans, hit counts and Bayes through PostgreSQL (issue 16).

The table is optional: without it mailopsd stays single-host, needs no PostgreSQL and never
imports psycopg.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass

from mailopsd.core.config.common import opt, positive
from mailopsd.core.config.types import Duration


def _node_name(value: str) -> None:
    """Validator: empty (the host name) or a short name of letters, digits, '.', '-', '_'."""
    if value and (len(value) > 63 or not all(c.isalnum() or c in ".-_" for c in value)):
        raise ValueError(f"expected a short node name such as \"mx1\" (got {value!r})")


@dataclass(frozen=True)
class ClusterConfig:
    """[cluster]: the shared PostgreSQL store and this node's name in it."""

    dsn: str = opt("", doc="libpq URI or key=value string; several hosts with "
                           "target_session_attrs=read-write follow a failover")
    dsn_file: str = opt("", doc="file holding the DSN (keeps the password out of this file)")
    node: str = opt("", check=_node_name, doc="this node's name; empty = the host name")
    retry_interval: Duration = opt(Duration(1), check=positive,
                                   doc="how often an unreachable store is tried again")
    connect_timeout: Duration = opt(Duration(2), check=positive,
                                    doc="longest wait for one connection attempt (libpq: at "
                                        "least 2 s) and for unacknowledged data")
    share_hits: bool = opt(True, doc="add other nodes' rule hits to this node's counts")
    hits_keep: Duration = opt(Duration(86400), check=positive,
                              doc="shared hits older than this are deleted from the store")

    def __post_init__(self) -> None:
        if bool(self.dsn) == bool(self.dsn_file):
            raise ValueError("give exactly one of dsn and dsn_file")
        if self.dsn_file and not self.dsn_file.startswith("/"):
            raise ValueError("dsn_file must be an absolute path")

    @property
    def node_name(self) -> str:
        """The configured node name, or this host's short name."""
        return self.node or socket.gethostname().split(".")[0]
