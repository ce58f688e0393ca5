"""The blocker's rule names and their defaults, and the check for custom rules' regexes.

They live in the config schema because the schema validates ``[blocker.rules.<name>]`` tables;
the blocker (``mailopsd.blocker.rules``) imports them to build what each rule does. Each rule has a
stable name (used in config keys, events, the bans table and the CLI) and fail2ban's vocabulary:
``maxretry`` matches within ``findtime`` ban for ``bantime``.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass

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



def check_regex(value: str) -> None:
    """Validator for custom rules: a valid Python regex with a named group ``ip``.

    Raises ValueError saying what is wrong.
    """
    with warnings.catch_warnings(record=True) as caught:
        # Python warns (FutureWarning) about patterns whose meaning will change, e.g. "[[a]":
        # say so plainly as a config error instead of letting a raw warning reach the admin
        warnings.simplefilter("always")
        try:
            pattern = re.compile(value)
        except re.error as exc:
            raise ValueError(f"not a valid regular expression: {exc}") from None
    for w in caught:
        raise ValueError(f"ambiguous regular expression: {w.message}; escape the character "
                         "with a backslash (e.g. \\[ for a literal '[')")
    if "ip" not in pattern.groupindex:
        raise ValueError("needs a named group (?P<ip>...) capturing the client address")
