"""The C counting loop (blocker/_fastcount.c) against the Python loop on small cases: dict
order, odd events and times, rule names, generators, one event at a time, and hypothesis."""

from __future__ import annotations

import random
from collections.abc import Iterable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailopsd.blocker import policy as policy_mod
from mailopsd.blocker.policy import BanPolicy
from mailopsd.core.config import parse_config
from mailopsd.core.config.rule_names import AUTHENTICATED
from tests.unit.test_blocker_fastcount import (
    NAMES,
    PY,
    RULES,
    T0,
    C,
    Spied,
    _items,
    addresses,
    chunked,
    config,
    previous_bans,
    run_both,
    same_state,
    stream,
)

CFG = parse_config({"blocker": {"ignore_self": False, "auth_exempt": 60, "ignore": [
    "192.0.2.0/28"], "rules": {"auth-failed": {"maxretry": 2}}}}).blocker


def test_new_keys_go_in_where_the_python_loop_puts_them() -> None:
    """A rule first met unmatched, then another matched, then the first: the dicts keep the
    Python loop's key order (the C loop's pending counts are written back later)."""
    ip = "198.51.100.1"
    run_both(CFG, [[("other", None, 0.0), ("not-a-rule", ip, T0), ("other", ip, T0 + 1),
                    ("sync-error", ip, T0 + 2), ("sync-error", ip, T0 + 3)]])


def test_more_rule_names_than_slots() -> None:
    names = [f"r{i}" for i in range(40)]
    rnd = random.Random(5)
    events = [(rnd.choice([*names, *RULES]), rnd.choice(["198.51.100.1", "2001:db8::2", None]),
               T0 + i) for i in range(3000)]
    run_both(CFG, chunked(rnd, events))


def test_rule_names_equal_but_not_the_same_object() -> None:
    ip = "198.51.100.9"
    run_both(CFG, [[("".join(["auth", "-failed"]), ip, T0), ("auth-failed", ip, T0 + 1)]] * 3)


@pytest.mark.parametrize("bad", [
    ("auth-failed", "198.51.100.1"),  # not 3 items
    ["auth-failed", "198.51.100.1", T0],  # a list, not a tuple
    None, 7,
    (1, "198.51.100.1", T0), ("auth-failed", 7, T0), ("auth-failed", b"1.2.3.4", T0),
    ("auth-failed", "198.51.100.1", "1795507200"), ("auth-failed", "198.51.100.1", None),
    ("auth-failed", "198.51.100.1", 1.0j), (type("S", (str,), {})("auth-failed"), "x", T0),
])
def test_odd_events_raise_type_errors_after_counting_what_came_before(bad: Any) -> None:
    """The parsers never make these: the C loop refuses them (TypeError; the Python loop
    would take some, e.g. a str time), having counted the events before them."""
    good = [("auth-failed", "198.51.100.1", T0), ("auth-failed", "198.51.100.2", T0 + 1)]
    c, py = Spied(CFG).p, Spied(CFG).p
    with pytest.raises(TypeError):
        C(c, [*good, bad, *good], [])
    PY(py, good, [])
    same_state(c, py)


@pytest.mark.parametrize("when", [True, 0, -5, 10**30, float("inf"), float("-inf"), 1e308])
def test_odd_times_count_as_the_python_loop_counts_them(when: Any) -> None:
    run_both(CFG, [[("auth-failed", "198.51.100.1", when), ("no-rdns", "198.51.100.1", when),
                    ("auth-failed", "198.51.100.1", T0), ("auth-failed", "198.51.100.1", when),
                    (AUTHENTICATED, "198.51.100.1", when)]])


def test_nan_times_count_as_the_python_loop_counts_them() -> None:
    nan = float("nan")
    run_both(CFG, [[("auth-failed", "198.51.100.1", T0), ("auth-failed", "198.51.100.1", nan),
                    ("auth-failed", "198.51.100.2", nan), ("auth-failed", "198.51.100.2", T0),
                    ("auth-failed", "198.51.100.2", nan), (AUTHENTICATED, "198.51.100.3", nan),
                    ("no-rdns", "198.51.100.3", T0)]])


def test_a_too_big_int_time_fails_alike() -> None:
    run_both(CFG, [[("auth-failed", "198.51.100.1", T0), ("auth-failed", "198.51.100.1", 10**400),
                    ("auth-failed", "198.51.100.1", T0)]])


def test_unmatched_lines_of_any_hashable_rule_count_alike() -> None:
    run_both(CFG, [[(None, None, 0.0), (("a", 1), None, "x"), ("no-rdns", None, None)],
                   [([], None, 0.0)]])  # unhashable: TypeError from both


def test_events_from_a_generator_see_the_policy_as_the_python_loop_leaves_it() -> None:
    """A generator's next() runs Python code between two events: it must see the counts."""
    def events(p: BanPolicy, seen: list[Any]) -> Iterable[Any]:
        for i in range(60):
            seen.append((_items(p.matches), p._newest, p._since_prune, _items(p._last_match)))
            yield ("auth-failed" if i % 3 else "no-rdns", f"198.51.100.{i % 7}", T0 + i)

    seen_c: list[Any] = []
    seen_py: list[Any] = []
    c, py = Spied(CFG), Spied(CFG)
    out_c: list[Any] = []
    out_py: list[Any] = []
    C(c.p, events(c.p, seen_c), out_c)
    PY(py.p, events(py.p, seen_py), out_py)
    assert seen_c == seen_py and out_c == out_py and len(out_c) > 5
    same_state(c.p, py.p)


def test_decisions_go_to_any_object_with_append() -> None:
    class Out:
        def __init__(self) -> None:
            self.got: list[Any] = []

        def append(self, d: Any) -> None:
            self.got.append(d)

    a, b = Out(), Out()
    c, py = Spied(CFG).p, Spied(CFG).p
    events = [("auth-failed", f"198.51.100.{i % 3}", T0 + i) for i in range(30)]
    C(c, events, a)  # type: ignore[arg-type]
    PY(py, events, b)  # type: ignore[arg-type]
    assert a.got == b.got and len(a.got) == 3
    same_state(c, py)


def test_the_daemon_path_counts_one_event_at_a_time_alike(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # BanPolicy.count (the daemon's line path) hands count_events a one-event tuple: taken
    # through it, with the C loop under one policy and the Python loop under the other
    rnd = random.Random(3)
    pool = addresses(rnd, 50)
    events = [e for e in stream(rnd, 3000, pool) if e[1] is not None]
    c, py = Spied(CFG), Spied(CFG)
    for s in (c, py):
        s.p.track_changes()
    decided = 0
    for rule, ip, when in events:
        got = []
        for s, loop in ((c, C), (py, PY)):
            monkeypatch.setattr(policy_mod, "count_events", loop)
            got.append(s.p.count(rule, ip, when))
        assert repr(got[0]) == repr(got[1])
        decided += got[0] is not None
    same_state(c.p, py.p)
    assert decided > 0 and c.p.take_changes() == py.p.take_changes()


# -- hypothesis -------------------------------------------------------------------------------
CONFIGS = [config(random.Random(i)) for i in range(6)]
ADDRS = ["198.51.100.1", "198.51.100.2", "192.0.2.3", "2001:db8::1", "2001:db8::/64", "x"]
EVENT = st.tuples(st.sampled_from(NAMES), st.one_of(st.none(), st.sampled_from(ADDRS)),
                  st.one_of(st.integers(0, 4000).map(lambda x: T0 + x / 2),
                            st.integers(int(T0), int(T0) + 2000)))


@settings(max_examples=400, deadline=None)
@given(st.sampled_from(range(len(CONFIGS))), st.lists(st.lists(EVENT, max_size=60), max_size=6),
       st.booleans(), st.sampled_from([2, 8, 10**9]))
def test_any_stream_counts_alike(cfg: int, chunks: list[list[Any]], track: bool,
                                 compact_at: int) -> None:
    def setup(p: BanPolicy) -> None:
        p._compact_at = compact_at
        p._prune_at = compact_at

    def between(p: BanPolicy, i: int) -> None:
        if i % 2:
            BanPolicy.compact(p)

    run_both(CONFIGS[cfg], chunks, track=track, setup=setup, between=between,
             previous=previous_bans)
