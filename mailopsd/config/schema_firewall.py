"""[blocker.firewall]: how bans reach the kernel. Owned by the firewall work (issue 3)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from mailopsd.config.common import opt


@dataclass(frozen=True)
class FirewallConfig:
    """[blocker.firewall]: backend, chain/table names, ports and action."""

    backend: Literal["iptables", "nftables"] = opt("iptables")
    ports: tuple[int, ...] = opt((25,), doc="TCP ports closed to banned clients")
    action: Literal["drop", "reject"] = opt("drop")
