"""Configuration: TOML read with tomllib into frozen dataclasses, validated all at once.

The names below are loaded on first use (PEP 562), so that importing one schema module (as
``scan-log`` does for ``[blocker]``) does not pay for the loader and every other table.
"""

from __future__ import annotations

import importlib

TYPE_CHECKING = False  # typing's flag without importing typing (scan-log's start-up)
if TYPE_CHECKING:
    from typing import Any

    from mailopsd.core.config.loader import (
        DEFAULT_CONFIG_PATH,
        config_path_from,
        load_config,
        parse_config,
    )
    from mailopsd.core.config.schema import Config

_LAZY = {
    "DEFAULT_CONFIG_PATH": "mailopsd.core.config.loader",
    "config_path_from": "mailopsd.core.config.loader",
    "load_config": "mailopsd.core.config.loader",
    "parse_config": "mailopsd.core.config.loader",
    "Config": "mailopsd.core.config.schema",
}

__all__ = ["DEFAULT_CONFIG_PATH", "Config", "config_path_from", "load_config", "parse_config"]


def __getattr__(name: str) -> Any:
    try:
        module = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module 'mailopsd.core.config' has no attribute {name!r}") from None
    return getattr(importlib.import_module(module), name)
