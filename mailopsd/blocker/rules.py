"""The blocker's rules as the parser and the policy use them: the config applied to each rule.

The rule names, their defaults and the custom-regex check belong to the config schema
(``mailopsd.core.config.rule_names``); this module owns what a rule does at run time.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from mailopsd.core.config.rule_names import BUILTIN_RULES, CUSTOM_DEFAULTS, RuleDefaults

TYPE_CHECKING = False  # typing's flag without importing typing (scan-log's start-up)
if TYPE_CHECKING:
    from mailopsd.core.config.schema_blocker import BlockerConfig

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
