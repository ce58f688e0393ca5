# Types of the C extension (mailopsd/blocker/_fastscan.c) for mypy.
from collections.abc import Callable
from typing import Any

def scan(
    block: bytes | memoryview, keys: tuple[bytes, ...], offsets: tuple[int, ...],
    forms: tuple[int, ...],
    names: tuple[str | None, ...], minute_base: Callable[[str], float | None],
    hour_base: Callable[[str], float | None],
    aggregate: Callable[[str], str] | None,
) -> tuple[list[Any], list[int], int]: ...
# events: (rule, address, when) decided, or (None, start, end) for the grammar (their indexes)

def use_search(name: str) -> str: ...
# "generic" or "avx2" (x86-64 with AVX2): which line search scan uses; returns the previous one
