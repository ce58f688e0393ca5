"""The network checks over a config: DNSBL, served certificates, DKIM/SPF/DMARC records."""

from __future__ import annotations

import os
from typing import Any

from mailopsd.health.model import CRIT, OK, UNKNOWN, Check, Samples

# None given in [[health.tls]]: Exim's and Dovecot's own (Debian's paths); absent ones omitted
DEFAULT_TLS = (
    ("smtp://127.0.0.1:25", "/etc/exim4/exim.crt"),
    ("smtps://127.0.0.1:465", "/etc/exim4/exim.crt"),
    ("submission://127.0.0.1:587", "/etc/exim4/exim.crt"),
    ("imaps://127.0.0.1:993", "/etc/dovecot/private/dovecot.pem"),
    ("imap://127.0.0.1:143", "/etc/dovecot/private/dovecot.pem"),
)


def _resolver(config: Any) -> Any:
    from mailopsd.health.resolve import make_resolver

    h = config.health
    return make_resolver(h.nameservers, float(h.dns_timeout))


def sending_addresses(config: Any) -> list[str]:
    """[health] addresses, else the host's global ones."""
    from mailopsd.health.dnsbl import host_addresses

    return list(config.health.addresses) or host_addresses()


def dnsbl_checks(config: Any, samples: Samples) -> list[Check]:
    """One check per DNSBL zone."""
    from mailopsd.health.dnsbl import check_dnsbl

    zones = config.health.dnsbl_zones
    if not zones:
        return []
    addresses = sending_addresses(config)
    if not addresses:
        return [Check("dnsbl", OK, "no global address to look up",
                      "set [health] addresses to the public address(es) mail leaves from")]
    return check_dnsbl(_resolver(config), zones, addresses, samples)


def tls_checks(config: Any, samples: Samples, now: float) -> list[Check]:
    """One check per endpoint (the defaults when [[health.tls]] lists none)."""
    from mailopsd.health.tls import Endpoint, check_endpoint

    h = config.health
    if h.tls:
        endpoints = [Endpoint(t.url, t.cert) for t in h.tls]
    elif h.tls_defaults:
        endpoints = [Endpoint(u, c, implicit_default=True) for u, c in DEFAULT_TLS]
    else:
        return []
    checks = []
    for ep in endpoints:
        check = check_endpoint(ep, float(h.tls_timeout), float(h.cert_warn), samples, now)
        if check is not None:
            checks.append(check)
    return checks


def selector_from_file(text: str) -> str:
    """The selector in the seed's lsearch file ("selector: 201809191"), or a file holding
    only the selector; "" if neither."""
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() == "selector" and value.strip():
            return value.strip().strip('"')
        words = line.split()
        if len(words) == 2 and words[0] == "selector":  # lsearch allows "key value" too
            return words[1].strip('"')
    words = text.split()
    return words[0] if len(words) == 1 and ":" not in words[0] else ""


def dkim_selector(config: Any) -> str:
    """The selector from [health] dkim_selector_file, else dkim_selector."""
    h = config.health
    if h.dkim_selector_file:
        with open(h.dkim_selector_file, encoding="utf-8", errors="replace") as f:
            found = selector_from_file(f.read(4096))
        if found:
            return found
    return str(h.dkim_selector)


def record_checks(config: Any, samples: Samples, none_since: dict[str, float],
                  now: float) -> list[Check]:
    """DKIM (when a key and selector are set), SPF and DMARC for each of dkim_domains."""
    from mailopsd.health.dnsrecords import check_dkim, check_dmarc, check_spf, public_key_b64

    h = config.health
    if not h.dkim_domains:
        return []
    resolver = _resolver(config)
    checks: list[Check] = []
    pub = selector = ""
    if h.dkim_private_key:
        try:
            selector = dkim_selector(config)
            with open(h.dkim_private_key, "rb") as f:
                pub = public_key_b64(f.read(1 << 16))
        except (OSError, ValueError, TypeError) as exc:
            checks.append(Check("dkim", UNKNOWN, f"cannot read the DKIM key or selector: {exc}",
                                "check [health] dkim_private_key / dkim_selector_file"))
    if h.dkim_private_key and os.path.exists(h.dkim_private_key):
        from mailopsd.health.tlsfiles import can_read

        try:
            readable = can_read(h.dkim_private_key, "Debian-exim")
        except (OSError, KeyError):
            readable = True  # no Debian-exim here: not Exim's problem to report
        if not readable:  # with the seed's DKIM_STRICT, Exim then sends nothing signed
            checks.append(Check("dkim_key_file", CRIT,
                                f"Debian-exim cannot read {h.dkim_private_key}",
                                f"chown root:Debian-exim {h.dkim_private_key} && chmod 640 it",
                                event="dkim_key_unreadable",
                                fields={"path": h.dkim_private_key}))
    addresses = sending_addresses(config)
    for domain in h.dkim_domains:
        if pub and selector:
            checks.append(check_dkim(resolver, domain, selector, pub, samples))
        if addresses:
            checks.append(check_spf(resolver, domain, addresses, samples))
        check, policy = check_dmarc(resolver, domain, samples, none_since.get(domain),
                                    float(h.dmarc_none_warn), now)
        if policy == "none":
            none_since.setdefault(domain, now)
        else:
            none_since.pop(domain, None)
        checks.append(check)
    return checks


def tls_file_checks(config: Any) -> list[Check]:
    """The [tls-deploy] certificate/key files, where they exist."""
    from mailopsd.health.tlsfiles import file_checks

    return file_checks(config)
