"""Log-driven auto blocking (was ip-block.pl).

Detection: ``parse`` (Exim lines -> matches), ``rules`` (built-in and custom rules), ``policy``
(matches -> ban decisions), ``ignore`` (never-ban list), ``scan`` (``mailopsd scan-log``).
Enforcement: ``service`` (the daemon's blocker), ``store`` (bans table), ``flood``, and
``mailopsd.firewall``. Submodules are imported on use: this package stays light.
"""
