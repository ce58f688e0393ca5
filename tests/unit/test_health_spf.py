"""SPF evaluation and the DKIM/DMARC readers over a fake resolver of real dnspython records."""

from __future__ import annotations

from typing import Any

import dns.resolver
import dns.rrset
import pytest

from mailopsd.health.dnsrecords import dmarc_policy, spf_passes
from mailopsd.health.model import Samples
from mailopsd.health.resolve import LookupFailed, query

ZONE = {
    ("example.test", "TXT"): ['"v=spf1 ip4:192.0.2.0/28 include:_spf.example.test ~all"'],
    ("_spf.example.test", "TXT"): ['"v=spf1 mx:example.test -all"'],
    ("example.test", "MX"): ["10 mx.example.test."],
    ("mx.example.test", "A"): ["198.51.100.25"],
    ("redir.test", "TXT"): ['"v=spf1 redirect=example.test"'],
    ("fail.test", "TXT"): ['"v=spf1 -ip4:192.0.2.1 +all"'],
    ("loop.test", "TXT"): ['"v=spf1 include:loop.test -all"'],
    ("two.test", "TXT"): ['"v=spf1 +all"', '"v=spf1 -all"'],
    ("_dmarc.example.test", "TXT"): ['"v=DMARC1; " "p=quarantine; rua=mailto:d@example.test"'],
    ("broken.test", "TXT"): None,  # SERVFAIL
}


class FakeAnswer:
    def __init__(self, rrset: Any) -> None:
        self.rrset = rrset


class FakeResolver:
    def resolve(self, name: str, rdtype: str, search: bool = False,
                raise_on_no_answer: bool = True) -> FakeAnswer:
        key = (name.rstrip("."), rdtype)
        if key in ZONE and ZONE[key] is None:
            raise dns.resolver.NoNameservers()
        if key not in ZONE:
            if any(n == key[0] for n, _t in ZONE):
                return FakeAnswer(None)  # the name exists, not this type
            raise dns.resolver.NXDOMAIN()
        return FakeAnswer(dns.rrset.from_text(key[0] + ".", 300, "IN", rdtype, *ZONE[key]))


R: Any = FakeResolver()


@pytest.mark.parametrize(("domain", "address", "passes"), [
    ("example.test", "192.0.2.5", True),        # ip4 range
    ("example.test", "198.51.100.25", True),    # include -> mx:example.test -> A
    ("example.test", "203.0.113.1", False),     # ~all is not a pass
    ("redir.test", "198.51.100.25", True),      # redirect=
    ("fail.test", "192.0.2.1", False),          # first match wins: -ip4 before +all
    ("fail.test", "192.0.2.2", True),
    ("loop.test", "192.0.2.5", False),          # include loop ends at the lookup limit
    ("two.test", "192.0.2.5", False),           # two SPF records: permerror, never a pass
    ("nowhere.test", "192.0.2.5", False),       # no record at all
])
def test_spf_pass_decision(domain: str, address: str, passes: bool) -> None:
    assert spf_passes(R, domain, address) is passes


def test_txt_strings_are_joined_and_dmarc_policy_read() -> None:
    assert query(R, "_dmarc.example.test", "TXT") == [
        "v=DMARC1; p=quarantine; rua=mailto:d@example.test"]
    assert dmarc_policy(R, "example.test") == "quarantine"
    assert dmarc_policy(R, "nowhere.test") is None


def test_servfail_is_a_lookup_failure_not_an_absent_record() -> None:
    with pytest.raises(LookupFailed):
        query(R, "broken.test", "TXT")


def test_spf_check_unknown_when_the_resolver_fails() -> None:
    from mailopsd.health.dnsrecords import check_spf

    check = check_spf(R, "broken.test", ["192.0.2.5"], Samples())
    assert check.status == "UNKNOWN"
