"""[blocker]: log-driven auto blocking (was ip-block.pl). Owned by the blocking work (issue 3).

Detection keys live here ([blocker] and [blocker.rules.<name>]); [blocker.firewall] and
[blocker.flood] belong to schema_firewall.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from mailopsd.core.config.common import non_negative, opt, positive
from mailopsd.core.config.hints import did_you_mean, show
from mailopsd.core.config.rule_names import BUILTIN_RULES, RESERVED_NAMES, check_regex
from mailopsd.core.config.schema_firewall import FirewallConfig, FloodConfig
from mailopsd.core.config.types import AbsPath, Duration, KeyedProblems, Network

_RULE_NAME = re.compile(r"^[a-z][a-z0-9-]{0,39}$")


class BanTime(float):
    """A ban length: a duration ("1h", "7d", seconds) or "permanent" (also -1, as in fail2ban).

    Permanent is stored as -1.0; ``seconds`` gives None for it.
    """

    @classmethod
    def parse(cls, value: object) -> BanTime:
        """Return the ban time; raises ValueError for anything else (0 is refused)."""
        if isinstance(value, str) and value.strip().lower() in ("permanent", "forever"):
            return cls(-1.0)
        if isinstance(value, int | float) and not isinstance(value, bool) and value == -1:
            return cls(-1.0)
        try:
            seconds = Duration.parse(value)
        except ValueError:
            raise ValueError("expected a duration such as \"1h\", \"7d\", or \"permanent\" "
                             f"(got {show(value)})") from None
        if seconds <= 0:
            raise ValueError("a ban must last more than 0 seconds (use \"permanent\" for ever)")
        return cls(float(seconds))

    @property
    def seconds(self) -> float | None:
        """The ban length in seconds, None when permanent."""
        return None if self < 0 else float(self)

    def __repr__(self) -> str:
        return "BanTime('permanent')" if self < 0 else f"BanTime({float(self)!r})"


def _nonempty(value: str) -> None:
    if not value:
        raise ValueError("must not be empty")


def _factor(value: float) -> None:
    if value < 1:
        raise ValueError(f"must be 1 (no increment) or more (got {value})")


def _rule_names(rules: dict[str, RuleConfig]) -> None:
    """Validator of [blocker.rules]: built-in names, or custom rules that have a regex.

    Raises KeyedProblems, one per bad rule, each with a "did you mean" for a near built-in name.
    """
    problems: list[tuple[str, str]] = []
    for name, rule in rules.items():
        close = did_you_mean(name, BUILTIN_RULES)
        hint = f" (did you mean {close!r}?)" if close and close != name else ""
        if name in BUILTIN_RULES:
            if rule.regex is not None or rule.prefilter is not None:
                problems.append((name, "a built-in rule's pattern cannot be changed; give "
                                 "your rule another name"))
        elif hint and rule.regex is None:
            problems.append((name, f"not a built-in rule{hint}"))
        elif name in RESERVED_NAMES or not _RULE_NAME.match(name):
            problems.append((name, "a custom rule needs a lower-case kebab-case name other "
                             f"than {', '.join(sorted(RESERVED_NAMES))}{hint}"))
        elif rule.regex is None:
            problems.append((name, f"not a built-in rule ({', '.join(BUILTIN_RULES)}); a "
                             "custom rule needs regex"))
    if problems:
        raise KeyedProblems(problems)


@dataclass(frozen=True)
class RuleConfig:
    """[blocker.rules.<name>]: one built-in rule's settings, or a custom rule (with regex).

    Keys left out keep the built-in rule's default (custom rules: 5 hits in 10m ban 1h).
    """

    enabled: bool | None = opt(None, doc="switch the rule on or off")
    maxretry: int | None = opt(None, check=positive,
                               doc="this many matches within findtime ban the IP")
    findtime: Duration | None = opt(None, check=positive, doc="the counting window")
    bantime: BanTime | None = opt(None, doc="ban length, or \"permanent\"")
    regex: str | None = opt(None, check=check_regex,
                            doc="custom rules only: Python regex with a named group (?P<ip>...), "
                                "searched in the text after the timestamp")
    prefilter: str | None = opt(None, check=_nonempty,
                                doc="custom rules only: a literal substring every matching line "
                                    "contains; other lines skip the regex")


@dataclass(frozen=True)
class BlockerConfig:
    """[blocker]: follow the Exim mainlog and ban abusive IPs from the SMTP ports."""

    enabled: bool = opt(True, doc="run the blocker service in the daemon")
    mainlog: AbsPath = opt(AbsPath("/var/log/exim4/mainlog"))
    ignore: tuple[Network, ...] = opt((), doc="addresses/CIDRs never banned (added to "
                                              "loopback and this host's own addresses)")
    ignore_self: bool = opt(True, doc="never ban loopback or this host's own addresses")
    ipv6_aggregate: bool = opt(False, doc="count and ban IPv6 clients by their /64")
    auth_exempt: Duration = opt(Duration(86400), check=non_negative,
                                doc="an IP that authenticated is exempt from no-rdns this long")
    silence_warning: Duration = opt(Duration(7 * 86400), check=non_negative,
                                    doc="warn when an enabled rule matched nothing this long "
                                        "while the log kept moving; 0 = never")
    bantime_factor: float = opt(2.0, check=_factor,
                                doc="each earlier ban of the IP multiplies bantime by this")
    bantime_max: Duration = opt(Duration(7 * 86400), check=positive,
                                doc="cap of the incremented bantime")
    permanent_after: int = opt(0, check=non_negative,
                               doc="the Nth ban of an IP is permanent; 0 = never")
    rules: dict[str, RuleConfig] = opt(factory=dict, check=_rule_names,
                                       doc="built-in rule settings, custom rules")
    firewall: FirewallConfig = opt(factory=FirewallConfig)
    flood: FloodConfig = opt(factory=FloodConfig)
