"""What the admin reads about a bad key or value: "did you mean", fail2ban words, plain values.

No Python repr ever reaches the admin: values are shown as they would be written in TOML.
"""

from __future__ import annotations

from collections.abc import Iterable

# fail2ban's jail.conf words -> where mailopsd keeps the same idea. Looked up by the last
# component of the unknown key (and, for dotted fail2ban keys such as bantime.increment, by the
# key and its sub-key, since TOML turns `bantime.increment = true` into a table).
FAIL2BAN_WORDS: dict[str, str] = {
    "ignoreip": "blocker.ignore (a list of addresses/CIDRs)",
    "ignoreself": "blocker.ignore_self",
    "ignorecommand": "blocker.ignore (mailopsd runs no command to decide)",
    "bantime": "blocker.rules.<rule>.bantime (per rule), blocker.flood.bantime",
    "findtime": "blocker.rules.<rule>.findtime (per rule)",
    "maxretry": "blocker.rules.<rule>.maxretry (per rule)",
    "bantime.increment": "blocker.bantime_factor (1 = no increment)",
    "bantime.factor": "blocker.bantime_factor",
    "bantime.multipliers": "blocker.bantime_factor (mailopsd multiplies by the factor per ban)",
    "bantime.formula": "blocker.bantime_factor",
    "bantime.maxtime": "blocker.bantime_max",
    "bantime.rndtime": "blocker.bantime_max (mailopsd adds no random time)",
    "bantime.overalljails": "blocker.permanent_after (all rules count together)",
    "recidive": "blocker.permanent_after",
    "logpath": "blocker.mainlog",
    "backend": "blocker.firewall.backend (the log is always followed by name, with inotify)",
    "banaction": "blocker.firewall.backend and blocker.firewall.action",
    "banaction_allports": "blocker.firewall.ports",
    "port": "blocker.firewall.ports",
    "protocol": "blocker.firewall.ports (TCP)",
    "chain": "blocker.firewall.iptables_chain",
    "failregex": "blocker.rules.<name>.regex (a custom rule)",
    "ignoreregex": "blocker.rules.<name>.regex (write the regex so it does not match)",
    "prefregex": "blocker.rules.<name>.prefilter",
    "filter": "blocker.rules (built-in rules no-rdns, auth-failed, relay-denied, sync-error, "
              "nonmail)",
    "mode": "blocker.rules.<rule>.enabled (each built-in rule is switched on its own)",
    "usedns": "nothing: mailopsd bans the address Exim logged, never a resolved name",
    "dbfile": "daemon.state_dir",
    "dbpurgeage": "daemon.history_days",
    "loglevel": "logging.level",
    "logtarget": "logging.target",
    "destemail": "notify.mail_to",
    "action": "blocker.firewall.action (drop or reject)",
}

# fail2ban jail/section names a copied jail.local may bring along
FAIL2BAN_TABLES = {"default", "definition", "includes", "init", "exim", "exim-spam", "sshd",
                   "recidive", "jail", "jails"}


def show(value: object) -> str:
    """A value as TOML would spell it ("10m" stays "10m"; true, not True; no class names)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        number = float(value)
        return str(int(number)) if number.is_integer() else f"{number:g}"
    if isinstance(value, str):
        import json  # only when reporting a problem: not on every command's start-up

        return json.dumps(str(value), ensure_ascii=False)
    import datetime  # only when reporting a problem: not on scan-log's start-up

    if isinstance(value, datetime.date | datetime.time):
        return value.isoformat()
    if isinstance(value, list | tuple):
        return "[" + ", ".join(show(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {show(v)}" for k, v in value.items()) + "}"
    return f"a {type(value).__name__}"


def kind(value: object) -> str:
    """What a TOML value is, in words (for "expected a table, got ...")."""
    names = {bool: "true/false", int: "a number", float: "a number", str: "a string",
             list: "a list", dict: "a table"}
    for tp, name in names.items():
        if isinstance(value, tp):
            return name
    return "a date/time"


def _norm(key: str) -> str:
    return key.replace("-", "_").lower()


def did_you_mean(word: str, choices: Iterable[str]) -> str | None:
    """The closest choice to a mistyped word (same letters up to -/_ first, then difflib)."""
    pool = list(choices)
    for c in pool:
        if _norm(c) == _norm(word):
            return c
    import difflib  # only when reporting a problem

    by_norm = {_norm(c): c for c in pool}
    close = difflib.get_close_matches(_norm(word), list(by_norm), n=1, cutoff=0.7)
    return by_norm[close[0]] if close else None


def unknown_key_hint(key: str, value: object, known: Iterable[str], prefix: str) -> str:
    """The message for an unknown key: a did-you-mean, or where fail2ban's word lives here."""
    low = key.lower()
    subs = [f"{low}.{k.lower()}" for k in value] if isinstance(value, dict) else []
    for word in (*subs, low):
        if word in FAIL2BAN_WORDS:
            return (f"unknown key: {word!r} is fail2ban's; in mailopsd it is "
                    f"{FAIL2BAN_WORDS[word]}")
    close = did_you_mean(key, known)
    if close is not None:
        return f"unknown key (did you mean {close!r}?)"
    if not prefix and low in FAIL2BAN_TABLES:
        return ("unknown table: this looks like a fail2ban jail; mailopsd's blocker settings "
                "are in [blocker] (see docs/fail2ban.md)")
    return "unknown key"
