"""[metrics], [health], [[health.tls]] and [tls-deploy]: monitoring (issue 18)."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from mailopsd.core.config.common import non_negative, opt, positive
from mailopsd.core.config.types import AbsPath, Duration

# scheme -> (default port, how TLS starts: "starttls" or "implicit")
TLS_SCHEMES: dict[str, tuple[int, str]] = {
    "smtp": (25, "starttls"), "submission": (587, "starttls"), "smtps": (465, "implicit"),
    "imap": (143, "starttls"), "imaps": (993, "implicit"),
}
_UNIT = re.compile(r"^[A-Za-z0-9@_.:\\-]+\.(service|socket|target)$")


def _listen(value: str) -> None:
    """Validator: "" or HOST:PORT ("127.0.0.1:9597", "[::1]:9597")."""
    if value:
        split_hostport(value)


def split_hostport(value: str) -> tuple[str, int]:
    """("127.0.0.1", 9597) from "127.0.0.1:9597" or "[::1]:9597"; raises ValueError."""
    host, sep, port = value.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not sep or not port.isdigit() or not 0 < int(port) < 65536 or not host:
        raise ValueError(f"expected HOST:PORT such as \"127.0.0.1:9597\" (got {value!r})")
    return host, int(port)


def _textfile(value: str) -> None:
    if value and (not value.startswith("/") or not value.endswith(".prom")):
        raise ValueError(f"expected an absolute path ending in .prom (got {value!r})")


def _optional_path(value: str) -> None:
    if value and not value.startswith("/"):
        raise ValueError(f"expected an absolute path or \"\" (got {value!r})")


def _addresses(values: tuple[str, ...]) -> None:
    for value in values:
        try:
            ipaddress.ip_address(value)
        except ValueError:
            raise ValueError(f"{value!r} is not an IP address") from None


def _hostnames(values: tuple[str, ...]) -> None:
    for value in values:
        if not re.fullmatch(r"(?=.{1,253}$)[A-Za-z0-9_]([A-Za-z0-9_-]*\.?)*[A-Za-z0-9]?\.?", value):
            raise ValueError(f"{value!r} is not a DNS name")


def _units(values: tuple[str, ...]) -> None:
    for value in values:
        if not _UNIT.match(value):
            raise ValueError(f"{value!r} is not a systemd unit name such as \"exim4.service\"")


def _rate(value: float) -> None:
    if not 0 < value <= 1:
        raise ValueError(f"expected a fraction between 0 and 1 (got {value})")


def parse_tls_url(url: str) -> tuple[str, str, int]:
    """(scheme, host, port) of "smtp://127.0.0.1:25"; raises ValueError."""
    parts = urlsplit(url)
    if parts.scheme not in TLS_SCHEMES:
        raise ValueError(f"scheme must be one of {', '.join(TLS_SCHEMES)} (got {url!r})")
    try:
        port = parts.port or TLS_SCHEMES[parts.scheme][0]
    except ValueError:
        raise ValueError(f"bad port in {url!r}") from None
    if not parts.hostname or parts.path not in ("", "/"):
        raise ValueError(f"expected SCHEME://HOST[:PORT] (got {url!r})")
    return parts.scheme, parts.hostname, port


def _tls_url(value: str) -> None:
    parse_tls_url(value)


def _tls_urls(values: tuple[str, ...]) -> None:
    for value in values:
        parse_tls_url(value)


@dataclass(frozen=True)
class MetricsConfig:
    """[metrics]: the Prometheus endpoint and node_exporter textfile (both off by default)."""

    listen: str = opt("", check=_listen, doc="\"127.0.0.1:9597\" serves /metrics; \"\" = none")
    textfile: str = opt("", check=_textfile,
                        doc="node_exporter textfile (.prom), rewritten atomically; \"\" = none")


@dataclass(frozen=True)
class TlsEndpoint:
    """[[health.tls]]: one endpoint whose served certificate is checked."""

    url: str = opt(check=_tls_url, doc="smtp/submission/imap: STARTTLS; smtps/imaps: TLS")
    cert: AbsPath = opt(doc="the certificate file that should be served")


@dataclass(frozen=True)
class HealthConfig:
    """[health]: the checks `mailopsd health` and the daemon's health service run."""

    enabled: bool = opt(True, doc="the daemon's health service (events, metrics)")
    interval: Duration = opt(Duration(60), check=positive,
                             doc="how often the daemon runs the network checks")
    poll_interval: Duration = opt(Duration(2), check=positive,
                                  doc="how often the logs and the queue are looked at")
    exim_spool: AbsPath = opt(AbsPath("/var/spool/exim4"), doc="read directly: input/*-H")
    paniclog: AbsPath = opt(AbsPath("/var/log/exim4/paniclog"))
    spamd_log: str = opt("/var/log/mail.log", check=_optional_path,
                         doc="where spamd's `result:` lines go; \"\" = not checked")
    queue_warn: int = opt(100, check=non_negative, doc="WARN above, CRIT above 10x")
    queue_age_warn: Duration = opt(Duration(3600), check=positive)
    blocked_rate_warn: float = opt(0.1, check=_rate,
                                   doc="share of recent spamd results with a *_BLOCKED rule")
    no_bayes_rate_warn: float = opt(0.5, check=_rate,
                                    doc="share of recent spamd results scanned without Bayes")
    rules_age_warn: Duration = opt(Duration(45 * 86400), check=positive,
                                   doc="SpamAssassin rules older than this: WARN")
    dnsbl_zones: tuple[str, ...] = opt(
        ("zen.spamhaus.org", "bl.spamcop.net", "b.barracudacentral.org"), check=_hostnames)
    addresses: tuple[str, ...] = opt((), check=_addresses,
                                     doc="own sending addresses; [] = the host's global ones")
    nameservers: tuple[str, ...] = opt((), check=_addresses,
                                       doc="resolvers for every look-up; [] = /etc/resolv.conf")
    dns_timeout: Duration = opt(Duration(3), check=positive, doc="per DNS look-up")
    cert_warn: Duration = opt(Duration(14 * 86400), check=positive)
    tls: tuple[TlsEndpoint, ...] = opt((), doc="none given: Exim's and Dovecot's own")
    tls_defaults: bool = opt(True, doc="with no [[health.tls]]: probe 127.0.0.1 on 25, 465, "
                                       "587 (Exim) and 993, 143 (Dovecot); absent ones omitted")
    tls_timeout: Duration = opt(Duration(5), check=positive, doc="per TLS connection")
    dkim_domains: tuple[str, ...] = opt((), check=_hostnames)
    dkim_selector_file: str = opt("", check=_optional_path,
                                  doc="file holding the selector (the seed's dkim-selector)")
    dkim_selector: str = opt("", doc="the selector itself, when there is no selector file")
    dkim_private_key: str = opt("", check=_optional_path, doc="the key Exim signs with")
    dmarc_none_warn: Duration = opt(Duration(30 * 86400), check=non_negative,
                                    doc="p=none seen this long (by the daemon): WARN")


@dataclass(frozen=True)
class TlsDeployConfig:
    """[tls-deploy]: `mailopsd tls-deploy`, certbot's --deploy-hook."""

    exim_certificate: AbsPath = opt(AbsPath("/etc/exim4/tls/fullchain.pem"))
    exim_privatekey: AbsPath = opt(AbsPath("/etc/exim4/tls/privkey.pem"),
                                   doc="written root:Debian-exim 0640")
    exim_group: str = opt("Debian-exim", doc="the group Exim reads its key as")
    dovecot_certificate: AbsPath = opt(AbsPath("/etc/dovecot/private/fullchain.pem"))
    dovecot_privatekey: AbsPath = opt(AbsPath("/etc/dovecot/private/privkey.pem"),
                                      doc="written root:root 0600")
    reload: tuple[str, ...] = opt(("exim4.service", "dovecot.service"), check=_units,
                                  doc="[] = reload nothing (and skip the served check)")
    check_urls: tuple[str, ...] = opt(("smtp://127.0.0.1:25", "imaps://127.0.0.1:993"),
                                      check=_tls_urls,
                                      doc="served-certificate check after the reload")
    served_wait: Duration = opt(Duration(15), check=positive,
                                doc="how long the reloaded services get to serve the new one")
