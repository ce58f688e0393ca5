"""Log-driven auto blocking (was ip-block.pl): Exim mainlog lines in, bans out.

Detection: ``parse`` (Exim lines -> matches), ``rules`` (the config applied to built-in and custom
rules), ``policy`` (matches -> ban decisions), ``ignore`` (never-ban list; ``hostaddrs`` reads the
host's own addresses over rtnetlink), ``scan`` (``mailopsd scan-log``; ``_fastscan.c`` its hot path
in C, ``fastpath`` the same in Python: fallback and reference). Enforcement: ``service`` (the
daemon's blocker), ``store`` (bans table, ban history with evidence), ``flood`` (connection floods
seen with psutil), ``evidence`` (the lines behind each ban), ``banlock`` (the lock the daemon and
``mailopsd bans`` share), ``status`` (the blocker's part of ``mailopsd status``). May import: core,
logtail, firewall. Submodules are imported on use: this package stays light.
"""
