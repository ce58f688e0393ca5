"""The configuration as data again: for ``mailopsd config show`` (TOML or JSON).

TOML output is loadable as it stands: durations are written with the largest exact unit
("10m", "1w"), a permanent ban time as "permanent", unset optional keys are left out.
JSON gives durations in seconds and unset keys as null.
"""

from __future__ import annotations

import dataclasses
import json as jsonlib
import re
from collections.abc import Mapping
from typing import Any

from mailopsd.core.config.loader import parse_config, toml_key
from mailopsd.core.config.rule_names import BUILTIN_RULES, CUSTOM_DEFAULTS
from mailopsd.core.config.schema_blocker import BanTime
from mailopsd.core.config.types import Duration

_BARE = re.compile(r"^[A-Za-z0-9_-]+$")
_UNITS = (("w", 604800), ("d", 86400), ("h", 3600), ("m", 60), ("s", 1))


def duration_text(seconds: float) -> str:
    """Seconds as the config would say them: "1w", "90m", "200ms", "0s"."""
    if seconds == 0:
        return "0s"
    if float(seconds).is_integer():
        for unit, size in _UNITS:
            if seconds % size == 0:
                return f"{int(seconds) // size}{unit}"
    ms = seconds * 1000
    if abs(ms - round(ms)) < 1e-6:
        return f"{round(ms)}ms"
    return f"{seconds:g}s"


def _value(v: Any, json: bool) -> Any:
    if dataclasses.is_dataclass(v) and not isinstance(v, type):
        return to_data(v, json=json)
    if isinstance(v, BanTime):
        if v.seconds is None:
            return "permanent"
        return float(v) if json else duration_text(float(v))
    if isinstance(v, Duration):
        return float(v) if json else duration_text(float(v))
    if isinstance(v, str):
        return str(v)
    if isinstance(v, tuple | list):
        return [_value(x, json) for x in v]
    if isinstance(v, Mapping):
        return {str(k): _value(x, json) for k, x in v.items()}
    return v


def to_data(cfg: Any, *, json: bool = False) -> dict[str, Any]:
    """A dataclass config (or table) as nested dicts keyed by their TOML spelling."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(cfg):
        v = getattr(cfg, f.name)
        if v is None and not json:
            continue  # TOML has no null: an unset optional key is simply absent
        out[toml_key(f)] = _value(v, json)
    return out


def effective_rules(cfg: Any, *, json: bool = False) -> dict[str, Any]:
    """Every blocker rule with the values in force: built-in rules with their defaults filled
    in (what `fail2ban-client get exim maxretry` would tell), custom rules after them."""
    out: dict[str, Any] = {}
    rules = cfg.blocker.rules
    for name in [*BUILTIN_RULES, *(n for n in rules if n not in BUILTIN_RULES)]:
        d = BUILTIN_RULES.get(name, CUSTOM_DEFAULTS)
        rc = rules.get(name)
        given = to_data(rc, json=json) if rc is not None else {}
        given = {k: v for k, v in given.items() if v is not None}
        bantime: Any = "permanent" if d.bantime is None else (
            d.bantime if json else duration_text(d.bantime))
        rule = {"enabled": True, "maxretry": d.maxretry,
                "findtime": d.findtime if json else duration_text(d.findtime),
                "bantime": bantime}
        rule.update(given)
        out[name] = rule
    return out


def show_data(cfg: Any, *, json: bool = False) -> dict[str, Any]:
    """The whole configuration in force, the blocker's rules included with their values."""
    data = to_data(cfg, json=json)
    data["blocker"]["rules"] = effective_rules(cfg, json=json)
    return data


def _diff(have: dict[str, Any], default: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in have.items():
        d = default.get(k, dataclasses.MISSING)
        if isinstance(v, dict) and isinstance(d, dict) and d:
            sub = _diff(v, d)
            if sub:
                out[k] = sub
        elif v != d:
            out[k] = _strip_none(v)
    return out


def _strip_none(v: Any) -> Any:
    """A table that is new as a whole (a rule): its unset keys are defaults, not differences."""
    if isinstance(v, dict):
        return {k: _strip_none(x) for k, x in v.items() if x is not None}
    return v


def non_default(cfg: Any, *, json: bool = False) -> dict[str, Any]:
    """Only the keys whose value differs from the built-in default (``postconf -n``)."""
    out = _diff(show_data(cfg, json=json), show_data(parse_config({}), json=json))
    for name, rule in out.get("blocker", {}).get("rules", {}).items():
        if name not in BUILTIN_RULES:  # a custom rule: what was written, not filled defaults
            written = to_data(cfg.blocker.rules[name], json=json)
            rule.clear()
            rule.update({k: v for k, v in written.items() if v is not None})
    return out


def _key(k: str) -> str:
    return k if _BARE.match(k) else jsonlib.dumps(k)


def _scalar(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(v)
    if isinstance(v, str):
        return jsonlib.dumps(v, ensure_ascii=False)
    if isinstance(v, list):
        return "[" + ", ".join(_scalar(x) for x in v) + "]"
    if isinstance(v, dict):  # an array of tables ([[health.tls]]) as inline tables
        return "{" + ", ".join(f"{_key(k)} = {_scalar(x)}" for k, x in v.items()) + "}"
    raise TypeError(f"cannot write {type(v).__name__} as TOML")


def to_toml(data: dict[str, Any], prefix: str = "") -> str:
    """Nested dicts as a TOML document (scalars first, then one [table] per sub-dict)."""
    lines: list[str] = []
    scalars = {k: v for k, v in data.items() if not isinstance(v, dict)}
    tables = {k: v for k, v in data.items() if isinstance(v, dict)}
    if prefix and (scalars or not tables):
        lines.append(f"\n[{prefix}]")
    for k, v in scalars.items():
        lines.append(f"{_key(k)} = {_scalar(v)}")
    text = "\n".join(lines) + ("\n" if lines else "")
    for k, v in tables.items():
        text += to_toml(v, f"{prefix}.{_key(k)}" if prefix else _key(k))
    return text.lstrip("\n") if not prefix else text
