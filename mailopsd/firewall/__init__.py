"""Firewall backends that close the SMTP ports to banned addresses (see base.FirewallBackend).

Owns: the python-iptables backend (``iptables``) and the nftables one (``nftables``), and the
backend contract (``base``). May import: core only; the blocker drives them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mailopsd.core.config.schema import Config
    from mailopsd.firewall.base import FirewallBackend


def make_backend(config: Config, name: str | None = None) -> FirewallBackend:
    """The backend named by ``blocker.firewall.backend`` (or ``name``), not yet set up."""
    fw = config.blocker.firewall
    if (name or fw.backend) == "nftables":
        from mailopsd.firewall.nftables import NftablesBackend

        return NftablesBackend(fw, nft=config.binaries.nft)
    from mailopsd.firewall.iptables import IptablesBackend

    return IptablesBackend(fw)


def all_backends(config: Config) -> list[FirewallBackend]:
    """One instance of every backend (``bans flush`` cleans up after a backend switch too)."""
    return [make_backend(config, "iptables"), make_backend(config, "nftables")]
