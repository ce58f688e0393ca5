"""The blocker's rules: built-in Exim rules with their defaults, and custom rules from the config.

Each rule has a stable name (used in config keys, events, the bans table and the CLI) and
fail2ban's vocabulary: ``maxretry`` matches within ``findtime`` ban for ``bantime``.
This module imports nothing heavy: the config schema imports it to validate rule names.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mailopsd.config.schema_blocker import BlockerConfig

MINUTE = 60.0
HOUR = 3600.0

# Pseudo-rule of the parser: a successful AUTH (`<= ... A=authenticator:user`). Never bans;
# it exempts the IP from no-rdns for blocker.auth_exempt.
AUTHENTICATED = "authenticated"
RESERVED_NAMES = frozenset({AUTHENTICATED, "manual", "flood", "conn-flood"})


@dataclass(frozen=True)
class RuleDefaults:
    """A built-in rule's defaults and what it matches (for docs and scan-log)."""

    maxretry: int
    findtime: float
    bantime: float | None  # None = permanent
    summary: str
    fail2ban: str  # the nearest fail2ban exim filter mode


# The defaults an experienced Debian admin expects: fail2ban-like windows, one hour bans that
# grow for repeat offenders (blocker.bantime_factor). no-rdns keeps the seed's threshold:
# "more than ten" hits, so the 11th hit in the window bans.
BUILTIN_RULES: dict[str, RuleDefaults] = {
    "no-rdns": RuleDefaults(
        11, HOUR, HOUR,
        "no host name found for IP address X (client without reverse DNS), and "
        "no IP address found for host N (during SMTP connection from [X])",
        "aggressive"),
    "auth-failed": RuleDefaults(
        5, 10 * MINUTE, HOUR,
        "<driver> authenticator failed for ... [X]: 535 Incorrect authentication data",
        "normal"),
    "relay-denied": RuleDefaults(
        5, HOUR, HOUR,
        "H=... [X] ... rejected RCPT <...>: relay not permitted", "normal/more"),
    "sync-error": RuleDefaults(
        3, HOUR, HOUR,
        "SMTP protocol synchronization error (...): rejected ... H=... [X] ... input=\"...\"",
        "normal/more"),
    "nonmail": RuleDefaults(
        3, HOUR, HOUR,
        "SMTP call from ... [X] dropped: too many nonmail commands / unrecognized commands / "
        "syntax or protocol errors", "normal/more"),
}
CUSTOM_DEFAULTS = RuleDefaults(5, 10 * MINUTE, HOUR, "custom rule", "failregex")


@dataclass(frozen=True)
class RuleSpec:
    """One rule as the parser and the policy use it, defaults resolved."""

    name: str
    enabled: bool
    maxretry: int
    findtime: float
    bantime: float | None  # None = permanent
    regex: re.Pattern[str] | None = None  # custom rules only
    prefilter: str | None = None  # custom rules only

    @property
    def builtin(self) -> bool:
        """Whether this is one of mailopsd's own Exim rules."""
        return self.regex is None


def check_regex(value: str) -> None:
    """Validator for custom rules: a valid Python regex with a named group ``ip``.

    Raises ValueError saying what is wrong.
    """
    try:
        pattern = re.compile(value)
    except re.error as exc:
        raise ValueError(f"not a valid regular expression: {exc}") from None
    if "ip" not in pattern.groupindex:
        raise ValueError("needs a named group (?P<ip>...) capturing the client address")


def rule_specs(cfg: BlockerConfig) -> dict[str, RuleSpec]:
    """Every rule (built-in first, then custom in config order) with the config applied."""
    specs: dict[str, RuleSpec] = {}
    for name, d in BUILTIN_RULES.items():
        specs[name] = _spec(name, d, cfg)
    for name in cfg.rules:
        if name not in BUILTIN_RULES:
            specs[name] = _spec(name, CUSTOM_DEFAULTS, cfg)
    return specs


def _spec(name: str, d: RuleDefaults, cfg: BlockerConfig) -> RuleSpec:
    rc = cfg.rules.get(name)
    if rc is None:
        return RuleSpec(name, True, d.maxretry, d.findtime, d.bantime)
    bantime = d.bantime if rc.bantime is None else rc.bantime.seconds
    return RuleSpec(
        name=name,
        enabled=True if rc.enabled is None else rc.enabled,
        maxretry=d.maxretry if rc.maxretry is None else rc.maxretry,
        findtime=d.findtime if rc.findtime is None else float(rc.findtime),
        bantime=bantime,
        regex=re.compile(rc.regex) if rc.regex is not None else None,
        prefilter=rc.prefilter)
