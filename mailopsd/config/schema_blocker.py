"""[blocker]: log-driven auto blocking (was ip-block.pl). Owned by the blocking work (issue 3)."""

from __future__ import annotations

from dataclasses import dataclass

from mailopsd.config.common import opt
from mailopsd.config.schema_firewall import FirewallConfig
from mailopsd.config.types import AbsPath


@dataclass(frozen=True)
class BlockerConfig:
    """[blocker]: follow the Exim mainlog and ban abusive IPs from the SMTP ports."""

    enabled: bool = opt(True, doc="run the blocker service in the daemon")
    mainlog: AbsPath = opt(AbsPath("/var/log/exim4/mainlog"))
    firewall: FirewallConfig = opt(factory=FirewallConfig)
