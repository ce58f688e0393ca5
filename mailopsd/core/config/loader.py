"""Turn a TOML document into the frozen Config, collecting every problem with its dotted key.

The builder walks the dataclass fields of the schema: each TOML key maps to a field (the key is the
field name, or ``metadata["key"]`` where the TOML spelling differs, as for kebab-case job ids).
A field's type says how to convert its value; ``metadata["check"]`` may add a validator that raises
ValueError. Unknown keys are errors. Nothing stops at the first problem.
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any, Literal, TypeVar, get_args, get_origin, get_type_hints

from mailopsd.core.config.hints import kind, show, unknown_key_hint
from mailopsd.core.config.sources import Sources, dotted_key, read_sources
from mailopsd.core.config.types import AbsPath, Duration, KeyedProblems, Network
from mailopsd.core.errors import ConfigError, ConfigProblem

DEFAULT_CONFIG_PATH = "/etc/mailopsd/mailopsd.toml"
T = TypeVar("T")
_TYPING_NAMES = {"Any": Any, "Literal": Literal}


def type_hints(cls: type) -> dict[str, Any]:
    """The field types of a schema dataclass. The schema modules import typing's names only for
    type checkers (scan-log's start-up does not import typing): they resolve here."""
    return get_type_hints(cls, localns=_TYPING_NAMES)


_MISSING = object()


def config_path_from(cli_value: str | None, environ: Mapping[str, str] | None = None) -> str:
    """Which config file to read: --config, else $MAILOPSD_CONFIG, else the default path."""
    env = os.environ if environ is None else environ
    return cli_value or env.get("MAILOPSD_CONFIG") or DEFAULT_CONFIG_PATH


def toml_key(f: dataclasses.Field[Any]) -> str:
    """The spelling of a field in the TOML file."""
    return str(f.metadata.get("key", f.name))


def _describe(tp: Any) -> str:
    names = {str: "a string", int: "an integer", float: "a number", bool: "true or false",
             Duration: "a duration such as \"10m\"", AbsPath: "an absolute path",
             Network: "an IP address or CIDR"}
    if tp in names:
        return names[tp]
    origin = get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in get_args(tp))
    if origin in (tuple, list):
        return f"a list of {_describe(get_args(tp)[0])}"
    if origin is dict:
        return "a table of tables"
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(a) for a in get_args(tp) if a is not type(None))
    if dataclasses.is_dataclass(tp):
        return "a table"
    return getattr(tp, "__name__", "a value")


class _Builder:
    def __init__(self) -> None:
        self.problems: list[ConfigProblem] = []

    def problem(self, key: str, message: str) -> None:
        self.problems.append(ConfigProblem(key or "(top level)", message))

    def build(self, cls: type[T], data: object, prefix: str) -> T | None:
        if not isinstance(data, dict):
            self.problem(prefix, f"expected a table, got {kind(data)} {show(data)}")
            return None
        hints = type_hints(cls)
        known = {toml_key(f): f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        for key in data:
            if key not in known:
                dotted = dotted_key(prefix, key)
                self.problem(dotted, unknown_key_hint(key, data[key], known, prefix))
        kwargs: dict[str, Any] = {}
        ok = True
        for key, f in known.items():
            dotted = dotted_key(prefix, key)
            if key not in data:
                if (f.default is dataclasses.MISSING
                        and f.default_factory is dataclasses.MISSING):
                    self.problem(dotted, f"required: {_describe(hints[f.name])}")
                    ok = False
                continue
            value = self.convert(hints[f.name], data[key], dotted)
            if value is _MISSING:
                ok = False
                continue
            check: Callable[[Any], object] | None = f.metadata.get("check")
            if check is not None:
                try:
                    check(value)
                except KeyedProblems as exc:  # per-entry problems of a table of tables
                    for sub, message in exc.problems:
                        self.problem(dotted_key(dotted, sub), message)
                    ok = False
                    continue
                except ValueError as exc:
                    self.problem(dotted, str(exc))
                    ok = False
                    continue
            kwargs[f.name] = value
        if not ok:
            return None
        try:
            return cls(**kwargs)
        except ValueError as exc:  # cross-field checks in __post_init__
            self.problem(prefix, str(exc))
            return None

    def convert(self, tp: Any, value: object, dotted: str) -> Any:
        origin = get_origin(tp)
        if origin in (typing.Union, types.UnionType):
            args = [a for a in get_args(tp) if a is not type(None)]
            if len(args) != 1:
                raise TypeError(f"unsupported union in schema at {dotted}")
            return self.convert(args[0], value, dotted)
        if dataclasses.is_dataclass(tp):
            built = self.build(tp, value, dotted)  # type: ignore[arg-type]
            return _MISSING if built is None else built
        if origin is Literal:
            if value in get_args(tp):
                return value
            return self._bad(dotted, tp, value)
        if origin is tuple:
            if not isinstance(value, list):
                return self._bad(dotted, tp, value)
            item_tp = get_args(tp)[0]
            items = [self.convert(item_tp, v, f"{dotted}[{i}]") for i, v in enumerate(value)]
            return _MISSING if any(i is _MISSING for i in items) else tuple(items)
        if origin is dict:
            _key_tp, val_tp = get_args(tp)
            if not isinstance(value, dict):
                return self._bad(dotted, tp, value)
            out = {}
            for k, v in value.items():
                conv = self.convert(val_tp, v, dotted_key(dotted, k))  # quoted if not bare
                if conv is not _MISSING:
                    out[k] = conv
            return _MISSING if len(out) != len(value) else types.MappingProxyType(out)
        # Duration, AbsPath, Network and any other value class with a `parse` classmethod
        # (e.g. schema_blocker.BanTime) convert themselves and raise ValueError.
        if tp in (Duration, AbsPath, Network) or (isinstance(tp, type)
                                                  and callable(getattr(tp, "parse", None))):
            try:
                return tp.parse(value)
            except ValueError as exc:
                self.problem(dotted, str(exc))
                return _MISSING
        if tp is bool:
            return value if isinstance(value, bool) else self._bad(dotted, tp, value)
        if tp is int:
            ok = isinstance(value, int) and not isinstance(value, bool)
            return value if ok else self._bad(dotted, tp, value)
        if tp is float:
            ok = isinstance(value, int | float) and not isinstance(value, bool)
            return float(value) if ok else self._bad(dotted, tp, value)  # type: ignore[arg-type]
        if tp is str:
            return value if isinstance(value, str) else self._bad(dotted, tp, value)
        raise TypeError(f"unsupported type {tp!r} in schema at {dotted}")

    def _bad(self, dotted: str, tp: Any, value: object) -> object:
        self.problem(dotted, f"expected {_describe(tp)}, got {show(value)}")
        return _MISSING


def parse_config(data: Mapping[str, Any], source: str = "") -> Any:
    """Build a Config from parsed TOML; raises ConfigError listing every problem."""
    from mailopsd.core.config.schema import Config, validate_config

    builder = _Builder()
    cfg = builder.build(Config, dict(data), "")
    if cfg is not None:
        for key, message in validate_config(cfg):
            builder.problem(key, message)
    if builder.problems:
        raise ConfigError(builder.problems, source)
    return cfg


def load_config(path: str | os.PathLike[str]) -> Any:
    """Read and validate a config file and its drop-ins; raises ConfigError (every problem,
    each naming the drop-in file that set the key) if it is bad."""
    return load_config_sources(path)[0]


def load_config_sources(path: str | os.PathLike[str]) -> tuple[Any, Sources]:
    """Like load_config, and also which files were read and which file set each key."""
    sources = read_sources(path)
    try:
        cfg = parse_config(sources.data, str(path))
    except ConfigError as exc:
        problems = []
        for p in exc.problems:
            origin = sources.file_of(p.key)
            if origin is not None and origin != str(path):
                p = ConfigProblem(p.key, f"{p.message} [in {origin}]")
            problems.append(p)
        raise ConfigError(problems, exc.source) from None
    return cfg, sources
