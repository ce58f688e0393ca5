"""DNS through dnspython with the configured resolvers and a hard time limit per look-up."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

import dns.exception
import dns.rdatatype
import dns.resolver
import dns.reversename


class LookupFailed(Exception):
    """The resolver did not answer (timeout, SERVFAIL, no nameserver): the figure is unknown."""


def make_resolver(nameservers: Sequence[str], timeout: float) -> dns.resolver.Resolver:
    """A resolver using ``nameservers`` ([] = /etc/resolv.conf), giving up after ``timeout``."""
    if nameservers:
        resolver = dns.resolver.Resolver(configure=False)
        resolver.nameservers = list(nameservers)
    else:
        resolver = dns.resolver.Resolver(configure=True)
    resolver.lifetime = timeout
    resolver.timeout = timeout
    resolver.cache = None
    return resolver


def query(resolver: dns.resolver.Resolver, name: str, rdtype: str) -> list[str] | None:
    """The answer's records as text (TXT: strings joined); None = the name/type does not exist.

    Raises LookupFailed when there is no answer to trust.
    """
    try:
        answer = resolver.resolve(name, rdtype, search=False, raise_on_no_answer=False)
    except dns.resolver.NXDOMAIN:
        return None
    except (dns.exception.Timeout, dns.resolver.NoNameservers, dns.resolver.YXDOMAIN,
            dns.resolver.NoAnswer, dns.exception.DNSException) as exc:
        raise LookupFailed(f"{rdtype} {name}: {exc.__class__.__name__}: {exc}") from None
    if answer.rrset is None:
        return None
    out: list[str] = []
    for rdata in answer.rrset:
        if rdata.rdtype == dns.rdatatype.TXT:
            # a TXT record split into several strings is one value: join them first
            out.append(b"".join(rdata.strings).decode("utf-8", "replace"))
        else:
            out.append(rdata.to_text())
    return out


def dnsbl_name(address: str, zone: str) -> str:
    """The name to look up for ``address`` in a DNSBL ``zone`` (reversed octets / nibbles)."""
    rev = dns.reversename.from_address(str(ipaddress.ip_address(address)))
    labels = rev.relativize(dns.reversename.ipv6_reverse_domain
                            if ":" in address else dns.reversename.ipv4_reverse_domain)
    return f"{labels.to_text()}.{zone.rstrip('.')}"
