"""Health commands: health (Nagios-style checks, Prometheus text) and tls-deploy."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from mailopsd.cli.common import EXIT_JOB_FAILED, EXIT_OK, EXIT_USAGE, load, print_json

NAGIOS_HELP = "exit status: 0 OK, 1 WARN, 2 CRIT, 3 UNKNOWN (the Nagios plugin convention)"


def register(sub: Any) -> None:
    """Add `health` and `tls-deploy` to the subparsers."""
    p = sub.add_parser(
        "health", help="run every health check now (queue, paniclog, spamd, Bayes, DNSBL, "
        "TLS, DNS records)", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Run every check of [health] now, without the daemon, and print one line "
        "per check: its status (OK, WARN, CRIT, UNKNOWN), its figure and what to do. Checks "
        "whose source is off or absent (no Exim spool, no spamd lines yet, a job disabled) "
        "are left out.", epilog=NAGIOS_HELP)
    p.add_argument("--json", action="store_true",
                   help="print a JSON list of {name, status, figure, action}")
    p.add_argument("--prometheus", action="store_true",
                   help="print the metrics in Prometheus' text format instead")
    p.set_defaults(handler=cmd_health)

    d = sub.add_parser(
        "tls-deploy", help="install a renewed certificate for Exim and Dovecot (certbot "
        "--deploy-hook)", description="Copy fullchain.pem and privkey.pem from a certbot "
        "lineage to where Exim and Dovecot read them ([tls-deploy]; atomic, regular files, "
        "Exim's key root:Debian-exim 0640, Dovecot's root-only), reload the units in "
        "[tls-deploy] reload, then check that the certificate served is the new one. A key "
        "that does not match the certificate is refused and the old files stay.",
        epilog="use: certbot renew --deploy-hook 'mailopsd tls-deploy'\n"
        "exit status: 0 deployed (and served), 1 refused or not served, 2 usage/config error")
    d.add_argument("--lineage", metavar="DIR",
                   help="the certbot lineage (default: $RENEWED_LINEAGE)")
    d.set_defaults(handler=cmd_tls_deploy)


def cmd_health(args: argparse.Namespace) -> int:
    """Run the checks once; exit 0/1/2/3."""
    from mailopsd.core.errors import ConfigError
    from mailopsd.health.checks import HealthChecks
    from mailopsd.health.model import EXIT_CODES, UNKNOWN, exit_code

    try:
        cfg = load(args)
    except ConfigError as exc:
        print(f"mailopsd: {exc}", file=sys.stderr)
        return EXIT_CODES[UNKNOWN]
    checks_obj = HealthChecks(cfg)
    local, samples = checks_obj.local()
    remote, remote_samples = checks_obj.remote()
    checks = [*local, *remote]
    if args.prometheus:
        from mailopsd.health.metrics import exposition, make_registry

        samples.update(checks_obj.state.samples())
        samples.update(remote_samples)
        for c in checks:
            samples.set("mailopsd_health_check_status", EXIT_CODES[c.status], check=c.name)
        sys.stdout.write(exposition(make_registry(lambda: samples)).decode())
    elif args.json:
        print_json([c.as_json() for c in checks])
    else:
        width = max((len(c.name) for c in checks), default=10)
        for c in checks:
            print(f"{c.status:<7} {c.name:<{width}}  {c.figure}")
            if c.status != "OK" and c.action:
                print(f"{'':<7} {'':<{width}}  -> {c.action}")
        if not checks:
            print("OK      (no check applies to this host)")
    return exit_code(checks)


def cmd_tls_deploy(args: argparse.Namespace) -> int:
    """Deploy a renewed lineage; exit 0, 1 (refused / not served) or 2."""
    import os

    from mailopsd.core.errors import MailopsError
    from mailopsd.health.deploy import deploy

    cfg = load(args)
    lineage = args.lineage or os.environ.get("RENEWED_LINEAGE", "")
    if not lineage:
        print("mailopsd: tls-deploy needs --lineage DIR or $RENEWED_LINEAGE (certbot sets it)",
              file=sys.stderr)
        return EXIT_USAGE
    try:
        report = deploy(cfg, lineage)
    except MailopsError as exc:
        print(f"mailopsd: tls-deploy: {exc}", file=sys.stderr)
        return EXIT_JOB_FAILED
    for line in report:
        print(line)
    return EXIT_OK
