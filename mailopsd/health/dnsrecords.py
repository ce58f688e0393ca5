"""The seed's DNS records: DKIM key in DNS = Exim's signing key, SPF covers us, DMARC exists."""

from __future__ import annotations

import base64
import ipaddress
import re
from collections.abc import Sequence

import dns.resolver

from mailopsd.health.model import CRIT, OK, UNKNOWN, WARN, Check, Samples
from mailopsd.health.resolve import LookupFailed, query

MAX_SPF_LOOKUPS = 10  # RFC 7208 4.6.4


def public_key_b64(private_key_pem: bytes) -> str:
    """The base64 SubjectPublicKeyInfo of a PEM private key (what a DKIM p= tag holds)."""
    from cryptography.hazmat.primitives import serialization

    key = serialization.load_pem_private_key(private_key_pem, password=None)
    der = key.public_key().public_bytes(serialization.Encoding.DER,
                                        serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(der).decode()


def tags(record: str) -> dict[str, str]:
    """"v=DKIM1; k=rsa; p=..." -> {"v": ..., "k": ..., "p": ...} (whitespace in values dropped)."""
    out: dict[str, str] = {}
    for part in record.split(";"):
        name, sep, value = part.partition("=")
        if sep:
            out[name.strip().lower()] = re.sub(r"\s+", "", value)
    return out


def check_dkim(resolver: dns.resolver.Resolver, domain: str, selector: str, pub_b64: str,
               samples: Samples) -> Check:
    """CRIT unless the TXT record at <selector>._domainkey.<domain> carries our public key."""
    name = f"{selector}._domainkey.{domain}"
    try:
        records = query(resolver, name, "TXT")
    except LookupFailed as exc:
        return Check(f"dkim {domain}", UNKNOWN, str(exc), "check the resolvers")
    keys = [tags(r).get("p", "") for r in records or () if "p=" in r]
    match = pub_b64 in keys
    samples.set("dns_dkim_key_matches", match, domain=domain)
    if match:
        return Check(f"dkim {domain}", OK, f"{name} carries the signing key's public half")
    figure = f"no DKIM record at {name}" if not keys else f"{name} holds another key"
    return Check(f"dkim {domain}", CRIT, figure,
                 f"publish TXT \"v=DKIM1; k=rsa; p={pub_b64[:12]}...\" at {name} (or sign "
                 "with the key that is published): every signed message fails DKIM until then",
                 event="dns_dkim_mismatch", fields={"domain": domain, "record": name})


def _spf_record(resolver: dns.resolver.Resolver, domain: str) -> str | None:
    records = [r for r in query(resolver, domain, "TXT") or ()
               if r.lower().startswith("v=spf1") and (len(r) == 6 or r[6] == " ")]
    return records[0] if len(records) == 1 else None


def _addresses_of(resolver: dns.resolver.Resolver, name: str, address: str) -> list[str]:
    """A records for an IPv4 ``address``, AAAA for IPv6 (RFC 7208 5.3: only its family)."""
    return query(resolver, name, "AAAA" if ":" in address else "A") or []


def _in(address: str, spec: str, default_len: str | None = None) -> bool:
    try:
        net = ipaddress.ip_network(spec if "/" in spec or default_len is None
                                   else f"{spec}/{default_len}", strict=False)
        return ipaddress.ip_address(address) in net
    except ValueError:
        return False


def spf_passes(resolver: dns.resolver.Resolver, domain: str, address: str,
               budget: list[int] | None = None) -> bool:
    """Whether ``address`` gets "pass" from ``domain``'s SPF record (ip4/ip6/a/mx/include/
    redirect/all; ptr and exists never match). Raises LookupFailed."""
    budget = [MAX_SPF_LOOKUPS] if budget is None else budget
    record = _spf_record(resolver, domain)
    if record is None:
        return False
    redirect = None
    for term in record.split()[1:]:
        qualifier = "+"
        if term[0] in "+-~?":
            qualifier, term = term[0], term[1:]
        mech, _, arg = term.partition(":")
        mech = mech.lower()
        if "=" in mech:
            if mech.startswith("redirect="):
                redirect = term.split("=", 1)[1]
            continue
        matched = False
        cidr = None
        if "/" in mech:
            mech, cidr = mech.split("/", 1)
        if mech in ("ip4", "ip6"):
            matched = _in(address, arg)
        elif mech == "all":
            matched = True
        elif mech in ("a", "mx", "include"):
            budget[0] -= 1
            if budget[0] < 0:
                return False
            target = (arg.split("/", 1)[0] if arg else domain)
            if mech == "include":
                matched = spf_passes(resolver, target, address, budget)
            elif mech == "a":
                matched = any(_in(address, a, cidr or ("128" if ":" in a else "32"))
                              for a in _addresses_of(resolver, target, address))
            else:
                for mx in query(resolver, target, "MX") or ():
                    host = mx.split()[-1]
                    if any(_in(address, a, cidr or ("128" if ":" in a else "32"))
                           for a in _addresses_of(resolver, host, address)):
                        matched = True
                        break
        if matched:
            return qualifier == "+"
    if redirect:
        budget[0] -= 1
        return budget[0] >= 0 and spf_passes(resolver, redirect, address, budget)
    return False


def check_spf(resolver: dns.resolver.Resolver, domain: str, addresses: Sequence[str],
              samples: Samples) -> Check:
    """CRIT when the SPF record does not pass one of our addresses; WARN when there is none."""
    try:
        record = _spf_record(resolver, domain)
        failing = [a for a in addresses if not spf_passes(resolver, domain, a)]
    except LookupFailed as exc:
        return Check(f"spf {domain}", UNKNOWN, str(exc), "check the resolvers")
    if record is None:
        samples.set("dns_spf_covers_host", 0, domain=domain)
        return Check(f"spf {domain}", WARN, "no (single) v=spf1 record",
                     f"publish one TXT record \"v=spf1 mx ip4:... -all\" at {domain}",
                     event="dns_spf_missing", fields={"domain": domain})
    samples.set("dns_spf_covers_host", not failing, domain=domain)
    if failing:
        return Check(f"spf {domain}", CRIT, f"does not pass {', '.join(failing)}: {record}",
                     f"add ip4:/ip6: for {', '.join(failing)} to {domain}'s SPF record",
                     event="dns_spf_not_covering", fields={"domain": domain,
                                                            "addresses": failing})
    return Check(f"spf {domain}", OK, f"passes {len(addresses)} address(es)")


def dmarc_policy(resolver: dns.resolver.Resolver, domain: str) -> str | None:
    """The p= of _dmarc.<domain> ("none", "quarantine", "reject"), None without a record."""
    for record in query(resolver, f"_dmarc.{domain}", "TXT") or ():
        t = tags(record)
        if t.get("v", "").upper() == "DMARC1":
            return t.get("p", "none").lower()
    return None


def check_dmarc(resolver: dns.resolver.Resolver, domain: str, samples: Samples,
                none_since: float | None = None, none_warn: float = 0.0,
                now: float = 0.0) -> tuple[Check, str | None]:
    """WARN when missing, or p=none for longer than ``none_warn`` (as far as we have seen)."""
    try:
        policy = dmarc_policy(resolver, domain)
    except LookupFailed as exc:
        return Check(f"dmarc {domain}", UNKNOWN, str(exc), "check the resolvers"), None
    samples.values.setdefault("dns_dmarc_policy", {})
    samples.set("dns_dmarc_policy", 1, domain=domain, policy=policy or "missing")
    if policy is None:
        return Check(f"dmarc {domain}", WARN, f"no DMARC record at _dmarc.{domain}",
                     f"publish TXT \"v=DMARC1; p=none; rua=mailto:postmaster@{domain}\", "
                     "then tighten it", event="dns_dmarc_missing", fields={"domain": domain}), None
    if policy == "none" and none_since is not None and none_warn and now - none_since > none_warn:
        return Check(f"dmarc {domain}", WARN, "p=none (monitoring only) for a long time",
                     "move to p=quarantine once the reports show only your own mail passing",
                     event="dns_dmarc_policy_none", fields={"domain": domain}), policy
    return Check(f"dmarc {domain}", OK, f"p={policy}"), policy
