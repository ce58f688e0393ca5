"""Configuration: TOML read with tomllib into frozen dataclasses, validated all at once."""

from mailopsd.config.loader import DEFAULT_CONFIG_PATH, config_path_from, load_config, parse_config
from mailopsd.config.schema import Config

__all__ = ["DEFAULT_CONFIG_PATH", "Config", "config_path_from", "load_config", "parse_config"]
