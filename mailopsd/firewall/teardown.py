"""Remove everything mailopsd put in the kernel's firewall, leaving the state database alone.

Run by the Debian package's prerm on ``remove`` (after the daemon stopped), so an uninstalled
mailopsd leaves no chain, jump, table or set behind, while the bans recorded in
``/var/lib/mailopsd`` come back if the package is installed again (purge deletes those too).
``bans flush`` is different: it also lifts every ban in the state database.
"""

from __future__ import annotations

import sys

from mailopsd.core.config.schema import Config
from mailopsd.core.errors import MailopsError


def teardown(config: Config) -> list[str]:
    """Flush both backends (the configured one and the other, after a switch); what went."""
    from mailopsd.firewall import all_backends

    removed: list[str] = []
    for backend in all_backends(config):
        try:
            removed += backend.flush()
        except (MailopsError, OSError) as exc:
            # e.g. nft not installed: nothing of that backend can be in the kernel either
            removed.append(f"{type(backend).__name__}: skipped ({exc})")
    return removed


def _config(path: str) -> Config:
    """The installed config; its defaults when it is broken or gone (names stay right)."""
    from mailopsd.core.config import load_config
    from mailopsd.core.errors import ConfigError

    try:
        return load_config(path)
    except ConfigError:
        return Config()


def main(argv: list[str]) -> int:
    """``python3 -m mailopsd.firewall.teardown [CONFIG]``: print what was removed."""
    path = argv[0] if argv else "/etc/mailopsd/mailopsd.toml"
    for line in teardown(_config(path)):
        print(f"mailopsd: removed {line}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
