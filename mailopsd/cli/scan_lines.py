"""scan-log's line views: is this an Exim mainlog at all, and which lines matched or missed.

Kept apart from the fast scanner (mailopsd.blocker.scan): these read the file a second time,
line by line, only when asked (``--print-matched`` / ``--print-missed``) or for a short sample.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping

from mailopsd.core.errors import MailopsError

TYPE_CHECKING = False  # typing's flag without importing typing (scan-log's start-up)
if TYPE_CHECKING:
    from typing import Any

EXIM_LINE = re.compile(rb"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d[ .]", re.ASCII)
SAMPLE = 1000
MAX_LINE = 64 * 1024


def _lines(path: str) -> Iterator[bytes]:
    """The file's lines (``.gz`` too), each cut at MAX_LINE; raises MailopsError."""
    opener: Any = open
    if path.endswith(".gz"):
        import gzip

        opener = gzip.open
    try:
        with opener(path, "rb") as f:
            for raw in f:
                yield raw[:MAX_LINE]
    except (OSError, EOFError) as exc:
        raise MailopsError(f"cannot read {path}: {getattr(exc, 'strerror', None) or exc}") \
            from None


def exim_like(path: str) -> tuple[int, int]:
    """(lines that start like an Exim mainlog line, lines sampled) in the first SAMPLE."""
    looked = sampled = 0
    for raw in _lines(path):
        if not raw.strip():
            continue
        sampled += 1
        if EXIM_LINE.match(raw):
            looked += 1
        if sampled >= SAMPLE:
            break
    return looked, sampled


def line_report(path: str, specs: Mapping[str, Any], ipv6_aggregate: bool, matched: bool,
                missed: bool) -> dict[str, list[dict[str, Any]]]:
    """Every matched line (rule, ip, line) and/or every missed line (near miss marked)."""
    from mailopsd.blocker.parse import LineParser

    parser = LineParser(specs, ipv6_aggregate=ipv6_aggregate)
    out: dict[str, list[dict[str, Any]]] = {}
    if matched:
        out["matched_lines"] = []
    if missed:
        out["missed_lines"] = []
    for raw in _lines(path):
        text = raw.decode("utf-8", "replace").rstrip("\r\n")
        if not text:
            continue
        hint, m = parser.examine(text)
        if m is not None:
            if matched:
                out["matched_lines"].append({"rule": m.rule, "ip": m.ip, "line": text})
        elif missed:
            out["missed_lines"].append({"line": text, "near_miss": hint})
    return out
