"""The configuration reference (docs/mailopsd.reference.toml) tells the truth about defaults,
names every key, and the starter /etc file stays short and valid."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

from mailopsd.core.config import load_config, parse_config
from mailopsd.core.config.dump import to_data
from mailopsd.core.config.loader import toml_key, type_hints
from mailopsd.core.config.rule_names import BUILTIN_RULES
from mailopsd.core.config.schema import Config

REPO = Path(__file__).resolve().parents[2]
REFERENCE = REPO / "docs" / "mailopsd.reference.toml"
STARTER = REPO / "etc" / "mailopsd.toml"


def schema_keys(cls: type, prefix: str = "") -> list[str]:
    """Every dotted key of the schema (tables of tables such as blocker.rules excluded)."""
    keys = []
    hints = type_hints(cls)
    for f in dataclasses.fields(cls):
        dotted = f"{prefix}.{toml_key(f)}" if prefix else toml_key(f)
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp):
            keys += schema_keys(tp, dotted)  # type: ignore[arg-type]
        elif getattr(tp, "__origin__", None) is not dict:
            keys.append(dotted)
    return keys


def test_every_default_the_reference_states_equals_the_schemas() -> None:
    ref = to_data(load_config(REFERENCE))
    default = to_data(parse_config({}))
    ref_rules = ref["blocker"].pop("rules")
    default["blocker"].pop("rules")
    assert ref == default
    # the built-in rules are written out with their built-in values
    assert set(ref_rules) == set(BUILTIN_RULES)
    for name, rule in ref_rules.items():
        builtin = BUILTIN_RULES[name]
        stated = parse_config({"blocker": {"rules": {name: rule}}}).blocker.rules[name]
        assert stated.enabled is True
        assert (stated.maxretry, stated.findtime, stated.bantime) == (
            builtin.maxretry, builtin.findtime, builtin.bantime), name


def test_the_reference_names_every_key() -> None:
    text = REFERENCE.read_text()
    tables: dict[str, set[str]] = {}
    table = ""
    for raw in text.splitlines():
        m = re.match(r"^(?:# ?)?\[([^\]]+)\]", raw)  # a table, or an optional one commented out
        if m:
            table = m.group(1)
            parent, _, name = table.rpartition(".")
            tables.setdefault(parent, set()).add(name)
            continue
        m = re.match(r"^(?:# ?)?([A-Za-z0-9_-]+)\s*=", raw)  # a key, or a commented example
        if m:
            tables.setdefault(table, set()).add(m.group(1))
    missing = []
    for dotted in schema_keys(Config):
        table, _, key = dotted.rpartition(".")
        if key not in tables.get(table, set()):
            missing.append(dotted)
    assert not missing, f"keys the reference does not show: {missing}"


def test_the_starter_config_is_short_valid_and_all_defaults() -> None:
    lines = STARTER.read_text().splitlines()
    assert len(lines) <= 80
    # as shipped it changes nothing: every setting is a commented suggestion
    assert to_data(load_config(STARTER)) == to_data(parse_config({}))
    for raw in lines:
        if raw.startswith("#"):
            continue
        assert not re.match(r"^\s*[A-Za-z0-9_-]+\s*=", raw), raw


def test_every_commented_suggestion_in_the_starter_is_valid_when_uncommented(
        tmp_path: Path) -> None:
    text = "\n".join(re.sub(r"^#(\s*(\[|[A-Za-z0-9_-]+\s*=))", r"\1", line)
                     for line in STARTER.read_text().splitlines())
    path = tmp_path / "mailopsd.toml"
    path.write_text(text)
    cfg: Any = load_config(path)
    assert cfg != parse_config({})
