"""Is one of our own sending addresses on a DNS blacklist?

An A answer in 127.0.0.0/8 means listed, except 127.255.255.0/24: Spamhaus's "your query was
refused" (public or over-used resolver, 127.255.255.254/.255, bad query .252). That is a WARN
about the resolver, never CRIT, never "listed": the same refusal makes SpamAssassin's own DNSBL
rules (URIBL_BLOCKED, RCVD_IN_ZEN_BLOCKED...) useless.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

import dns.resolver

from mailopsd.health.model import CRIT, OK, UNKNOWN, WARN, Check, Samples
from mailopsd.health.resolve import LookupFailed, dnsbl_name, query

_REFUSED = ipaddress.ip_network("127.255.255.0/24")
_LISTED = ipaddress.ip_network("127.0.0.0/8")


def host_addresses() -> list[str]:
    """The host's global unicast addresses (its possible sending addresses)."""
    import socket

    import psutil

    found: list[str] = []
    for addrs in psutil.net_if_addrs().values():
        for a in addrs:
            if a.family not in (socket.AF_INET, socket.AF_INET6):
                continue
            try:
                ip = ipaddress.ip_address(a.address.split("%", 1)[0])
            except ValueError:
                continue
            if ip.is_global and str(ip) not in found:
                found.append(str(ip))
    return found


def classify(answers: Sequence[str] | None) -> str:
    """"listed", "clean", "refused" or "odd" for a DNSBL A answer (None = NXDOMAIN)."""
    if not answers:
        return "clean"
    ips = []
    for text in answers:
        try:
            ips.append(ipaddress.ip_address(text))
        except ValueError:
            return "odd"
    if any(ip in _REFUSED for ip in ips):
        return "refused"
    if all(ip in _LISTED for ip in ips):
        return "listed"
    return "odd"  # e.g. a resolver that answers NXDOMAIN with an ad server's address


def check_dnsbl(resolver: dns.resolver.Resolver, zones: Sequence[str],
                addresses: Sequence[str], samples: Samples) -> list[Check]:
    """One check per zone (covering every address); sets dnsbl_listed / dnsbl_query_refused."""
    checks: list[Check] = []
    samples.values.setdefault("dnsbl_listed", {})
    samples.values.setdefault("dnsbl_query_refused", {})
    for zone in zones:
        listed: list[str] = []
        refused = False
        unknown: list[str] = []
        for address in addresses:
            try:
                verdict = classify(query(resolver, dnsbl_name(address, zone), "A"))
            except LookupFailed as exc:
                unknown.append(str(exc))
                continue
            if verdict == "refused":
                refused = True
            elif verdict == "odd":
                unknown.append(f"{address}: unexpected answer")
            else:
                samples.set("dnsbl_listed", verdict == "listed", zone=zone, address=address)
                if verdict == "listed":
                    listed.append(address)
        if not unknown or refused:
            samples.set("dnsbl_query_refused", refused, zone=zone)
        name = f"dnsbl {zone}"
        if listed:
            checks.append(Check(
                name, CRIT, f"listed: {', '.join(listed)}",
                f"find why (open relay, compromised account, spam run) in the mainlog, stop it, "
                f"then ask {zone} for delisting", event="dnsbl_listed",
                fields={"zone": zone, "addresses": listed}))
        elif refused:
            checks.append(Check(
                name, WARN, "query refused by the list (127.255.255.x answer)",
                "use a resolver of your own (e.g. unbound on 127.0.0.1), not a public one; "
                "SpamAssassin's DNSBL rules are blind until then", event="dnsbl_query_refused",
                fields={"zone": zone}))
        elif unknown:
            checks.append(Check(name, UNKNOWN, "; ".join(unknown)[:300],
                                "check the resolvers ([health] nameservers)",
                                event="dnsbl_lookup_failed", fields={"zone": zone}))
        elif addresses:
            checks.append(Check(name, OK, f"not listed ({len(addresses)} address(es))"))
    return checks
