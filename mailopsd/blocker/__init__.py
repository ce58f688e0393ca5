"""Log-driven auto blocking (was ip-block.pl): Exim mainlog lines in, bans out.

Detection: ``parse`` (Exim lines -> matches), ``rules`` (the config applied to built-in and custom
rules), ``policy`` (matches -> ban decisions), ``ignore`` (never-ban list), ``scan``
(``mailopsd scan-log``). Enforcement: ``service`` (the daemon's blocker), ``store`` (bans table),
``flood`` (connection floods seen with psutil). May import: core, logtail, firewall. Submodules
are imported on use: this package stays light.
"""
