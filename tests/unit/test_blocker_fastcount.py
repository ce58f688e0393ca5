"""The policy's counting loop in C (blocker/_fastcount.c) against its Python reference
(blocker/batch.py ``_count_events_py``): two fresh policies with the same config, ignore list
and ban store, the same events, then the same decisions, the same whole state afterwards and
the same state seen by every callback (so the C loop writes its cached state back before each)."""

from __future__ import annotations

import dataclasses
import random
import subprocess
import sys
import zlib
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pytest

from mailopsd.blocker import _fastcount, batch
from mailopsd.blocker import policy as policy_mod
from mailopsd.blocker.ignore import IgnoreList
from mailopsd.blocker.policy import BanPolicy
from mailopsd.core.config import parse_config
from mailopsd.core.config.rule_names import AUTHENTICATED
from mailopsd.core.config.schema_blocker import BlockerConfig
from tests.support.cext import compile_strict, extension_sources

REPO = Path(__file__).resolve().parents[2]
RULES = ("no-rdns", "auth-failed", "relay-denied", "sync-error", "nonmail")
NAMES = [*RULES, AUTHENTICATED, "mine", "not-a-rule", "other"]  # "mine": custom, maybe off
T0 = 1_795_507_200.0
C, PY = _fastcount.count, batch._count_events_py
Count = Callable[[BanPolicy, Iterable[Any], list[Any]], None]


def test_the_extension_is_built_and_counts() -> None:
    """install.sh and the .deb build it; without it the Python loop counts (~2x slower)."""
    assert batch.count_events is _fastcount.count
    assert _fastcount.AUTHENTICATED == AUTHENTICATED


def test_without_the_extension_the_python_loop_counts() -> None:
    code = ("import sys; sys.modules['mailopsd.blocker._fastcount'] = None\n"
            "from mailopsd.blocker import batch, policy\n"
            "assert batch.count_events is batch._count_events_py is policy.count_events\n")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO, timeout=60)


def test_the_extension_compiles_without_warnings(tmp_path: Path) -> None:
    compile_strict(tmp_path, extension_sources("mailopsd.blocker._fastcount"))


# -- the whole state of a policy --------------------------------------------------------------
def _items(d: dict[Any, Any]) -> list[tuple[Any, str, Any]]:
    """In order, with types: the dicts' order and float-or-list forms are state too."""
    return [(k, type(v).__name__, tuple(v) if type(v) is list else v) for k, v in d.items()]


def state(p: BanPolicy) -> dict[str, Any]:
    """Everything the counting loop can touch, copied (repr: NaN-safe)."""
    shards = [(t.cap, t.n, t.gone, t.keys.tobytes(), t.hi.tobytes(), t.t1.tobytes(),
               t.t2.tobytes(), t.r1.tobytes(), t.r2.tobytes()) for t in p._compact._tables]
    return {
        "tables": [(n, _items(t)) for n, t in p._hits.items()],
        "banned": _items(p._banned), "auth": _items(p._auth), "times": _items(p._times),
        "matches": _items(p.matches), "unmatched": _items(p.unmatched),
        "ignored": _items(p.ignored), "last": _items(p._last_match),
        "exempted": p.exempted, "newest": (type(p._newest).__name__, p._newest),
        "since_prune": p._since_prune, "prune_at": p._prune_at, "compact_at": p._compact_at,
        "compact": (p._compact.n, shards), "pruned_before": p.pruned_before,
        "dirty": None if p._dirty is None else sorted(p._dirty),
    }


def same_state(a: BanPolicy, b: BanPolicy) -> None:
    sa, sb = state(a), state(b)
    for key in sa:
        assert repr(sa[key]) == repr(sb[key]), key


class Spied:
    """A policy whose callbacks record what they see of it (light: counters and scalars)."""

    def __init__(self, cfg: BlockerConfig, previous: Callable[[str], int] | None = None,
                 fail: Callable[[str, tuple[Any, ...]], None] | None = None) -> None:
        self.p = BanPolicy(cfg, IgnoreList.from_config(cfg),
                           previous_bans=previous or (lambda ip: 0))
        self.seen: list[tuple[Any, ...]] = []
        self.calls: dict[str, int] = {}
        self.fail = fail
        p = self.p
        for name in ("prune", "compact", "_uncompact", "_decide"):
            setattr(p, name, self._spy(name, getattr(p, name)))
        p.ignore.contains = self._spy("contains", p.ignore.contains)  # type: ignore[method-assign]

    def _spy(self, name: str, real: Callable[..., Any]) -> Callable[..., Any]:
        def spy(*args: Any) -> Any:
            p = self.p
            self.calls[name] = self.calls.get(name, 0) + 1
            self.seen.append((name, args[0] if args else None, p._newest, p._since_prune,
                              p.exempted, _items(p.matches), _items(p.unmatched),
                              _items(p._last_match), len(p._banned), p._compact.n))
            if self.fail is not None:
                self.fail(name, args)
            return real(*args)
        return spy


def run_both(cfg: BlockerConfig, chunks: list[list[Any]], *, track: bool = False,
             setup: Callable[[BanPolicy], None] | None = None,
             between: Callable[[BanPolicy, int], None] | None = None,
             previous: Callable[[str], int] | None = None,
             fail: Callable[[str, tuple[Any, ...]], None] | None = None) -> tuple[Spied, Spied]:
    """Count the chunks into a C policy and a Python one; compare after every chunk."""
    pair = Spied(cfg, previous, fail), Spied(cfg, previous, fail)
    for s in pair:
        if track:
            s.p.track_changes()
        if setup is not None:
            setup(s.p)
    for i, chunk in enumerate(chunks):
        outs: list[list[Any]] = [[], []]
        errors: list[tuple[type[Exception], str] | None] = []
        for s, count, out in zip(pair, (C, PY), outs, strict=True):
            try:
                count(s.p, chunk, out)
                errors.append(None)
            except Exception as exc:  # the same exception, at the same event
                errors.append((type(exc), str(exc)))
        assert errors[0] == errors[1]
        assert outs[0] == outs[1]
        same_state(pair[0].p, pair[1].p)
        assert pair[0].seen == pair[1].seen
        if between is not None:
            raised: list[str | None] = []
            for s in pair:
                try:
                    between(s.p, i)
                    raised.append(None)
                except IndexError as exc:  # findtime 0 leaves empty lists, compact() fails
                    raised.append(str(exc))
            assert raised[0] == raised[1]
    return pair


# -- generated streams ------------------------------------------------------------------------
def config(rnd: random.Random) -> BlockerConfig:
    rules: dict[str, Any] = {r: {
        "maxretry": rnd.choice([1, 1, 2, 3, 5]), "findtime": rnd.choice(["1s", "1m", "10m", "1h",
                                                                         "30d"]),
        "bantime": rnd.choice(["1m", "1h", "1d", "permanent"])} for r in RULES}
    for r in RULES:
        if rnd.random() < 0.12:
            rules[r]["enabled"] = False
    rules["mine"] = {"regex": r"custom (?P<ip>\S+)", "prefilter": "custom ",
                     "maxretry": rnd.choice([1, 2]), "enabled": rnd.random() < 0.5}
    return parse_config({"blocker": {
        "ignore_self": False, "ignore": ["192.0.2.0/28", "2001:db8:f::/48"],
        "auth_exempt": rnd.choice([0, 0, 30, "1h", "1d"]),
        "bantime_factor": rnd.choice([1, 2, 3.5]), "bantime_max": rnd.choice(["1h", "7d"]),
        "permanent_after": rnd.choice([0, 0, 2, 3]), "rules": rules}}).blocker


def addresses(rnd: random.Random, n: int) -> list[str]:
    out = [f"198.51.{rnd.randrange(4)}.{rnd.randrange(256)}" for _ in range(n)]
    out += [f"192.0.2.{i}" for i in range(0, 20, 3)]  # 192.0.2.0/28 is ignored
    out += [f"2001:db8:{rnd.randrange(17):x}::{rnd.randrange(1, 300):x}" for _ in range(n // 4)]
    out += ["2001:DB8::1", "2001:db8::/64", "::ffff:198.51.100.1", "10.0.0.01", "x", "::"]
    return out


def stream(rnd: random.Random, n: int, pool: list[str]) -> list[tuple[Any, Any, Any]]:
    """Repeating and one-off addresses, every rule, unmatched lines, int times, time going
    back, equal times, big jumps (pruning), runs of one address (bans)."""
    events: list[tuple[Any, Any, Any]] = []
    t = T0
    hot = rnd.sample(pool, 5)
    while len(events) < n:
        t += rnd.choice([0.0, 0.0, 0.5, 1.0, 3.0, 7.0, 60.0, 300.0, -1.0, -2.0, -30.0, 3000.0,
                         90_000.0])
        rule = rnd.choice(NAMES)
        ip = rnd.choice(hot) if rnd.random() < 0.3 else rnd.choice(pool)
        when: Any = int(t) if rnd.random() < 0.05 else t
        if rnd.random() < 0.03:
            events.append((rule, None, 0.0))
        elif rnd.random() < 0.03:  # a user logs in, and connects from there without rDNS
            events += [(AUTHENTICATED, ip, when), ("no-rdns", ip, t + rnd.choice([0, 20, 90]))]
        elif rnd.random() < 0.02:  # a burst: one address, one rule, slightly out of order
            events += [(rule, ip, t + rnd.choice([0.0, 0.0, 1.0, -1.0, 2.5])) for _ in range(6)]
        else:
            events.append((rule, ip, when))
    return events


def chunked(rnd: random.Random, events: list[Any]) -> list[list[Any]]:
    out, i = [], 0
    while i < len(events):
        k = rnd.choice([1, 1, 2, 17, 500, 2000])
        out.append(events[i:i + k])
        i += k
    return out


def previous_bans(ip: str) -> int:
    h = zlib.crc32(ip.encode()) % 11
    if h == 0:
        raise ValueError("the ban store is down")  # _decide logs it and counts 0
    return h % 4


def _zero_findtime(rule: str) -> Callable[[BanPolicy], None]:
    def setup(p: BanPolicy) -> None:
        if rule in p.rules:
            p.rules[rule] = dataclasses.replace(p.rules[rule], findtime=0.0)
    return setup


def _daemon_steps(rnd: random.Random, pool: list[str]) -> Callable[[BanPolicy, int], None]:
    """Between chunks, what the daemon does to a policy (the same on both)."""
    plan = [(rnd.random(), rnd.choice(pool), rnd.choice([None, T0 + 50_000, int(T0) + 9]))
            for _ in range(10_000)]

    def between(p: BanPolicy, i: int) -> None:
        x, ip, until = plan[i % len(plan)]
        if x < 0.2:
            p.compact()
        elif x < 0.3:
            p.note_banned(ip, until)
        elif x < 0.4:
            p.forget(ip)
        elif x < 0.45:
            p.load_counts(ip, {"no-rdns": [T0 + 5, T0 + 6], AUTHENTICATED: [T0 + 7]})
        elif x < 0.5:
            p.take_changes()
    return between


@pytest.mark.parametrize("seed", range(8))
def test_generated_streams_count_alike(seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """>= 10,000 events per run through prunes, compactions and uncompactions by the dozen,
    bans, re-bans, ignored addresses, logins, rules not enabled, a failing ban store."""
    rnd = random.Random(seed)
    monkeypatch.setattr(policy_mod, "PRUNE_MIN", rnd.choice([16, 32, 64]))
    monkeypatch.setattr(policy_mod, "COMPACT_AT", rnd.choice([8, 40, 200]))
    cfg = config(rnd)
    pool = addresses(rnd, rnd.choice([60, 400, 3000]))
    events = stream(rnd, 12_000, pool)
    c, _ = run_both(cfg, chunked(rnd, events), track=seed % 2 == 0,
                    between=_daemon_steps(rnd, pool), previous=previous_bans)
    assert c.calls.get("prune", 0) >= 10 and c.calls.get("_uncompact", 0) >= 10
    assert c.calls.get("compact", 0) + c.calls.get("_decide", 0) >= 10


@pytest.mark.parametrize("seed", range(3))
def test_findtime_zero_counts_alike(seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """A window of 0 s (the config forbids it) keeps nothing: both loops leave the same empty
    lists and fail alike on them."""
    rnd = random.Random(seed)
    monkeypatch.setattr(policy_mod, "COMPACT_AT", 40)
    pool = addresses(rnd, 100)
    run_both(config(rnd), chunked(rnd, stream(rnd, 10_000, pool)), track=True,
             setup=_zero_findtime(rnd.choice(RULES)), between=_daemon_steps(rnd, pool))


@pytest.mark.parametrize("fail_at", ["prune", "compact", "_uncompact", "_decide", "contains"])
def test_a_callback_raising_mid_block_leaves_the_same_state(
        fail_at: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The exception comes out of both loops at the same event; what was counted before it
    is in the policy (the C loop's cached state written back), nothing after it."""
    rnd = random.Random(fail_at)
    monkeypatch.setattr(policy_mod, "PRUNE_MIN", 16)
    monkeypatch.setattr(policy_mod, "COMPACT_AT", 8)
    failed = [0, 0]

    def failing(k: int) -> Callable[[str, tuple[Any, ...]], None]:
        r = random.Random(99)  # one per policy: both see the same calls, so fail alike

        def fail(name: str, args: tuple[Any, ...]) -> None:
            if name == fail_at and r.random() < 0.2:
                failed[k] += 1
                raise RuntimeError(f"{name} failed")
        return fail

    cfg = config(rnd)
    events = stream(rnd, 10_000, addresses(rnd, 200))
    pair = Spied(cfg, previous_bans, failing(0)), Spied(cfg, previous_bans, failing(1))
    for i in range(0, len(events), 150):
        chunk = events[i:i + 150]
        if i % 300:
            for s in pair:
                BanPolicy.compact(s.p)  # (not the spy) addresses to bring back
        got: list[tuple[str | None, list[Any]]] = []
        for s, count in zip(pair, (C, PY), strict=True):
            out: list[Any] = []
            try:
                count(s.p, chunk, out)
                got.append((None, out))
            except RuntimeError as exc:
                got.append((str(exc), out))
        assert got[0] == got[1]
        same_state(pair[0].p, pair[1].p)
        assert pair[0].seen == pair[1].seen
    assert failed[0] == failed[1] >= 3
