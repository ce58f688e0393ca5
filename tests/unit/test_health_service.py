"""The health service's events: one per change of a check's status, none while it stays bad."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mailopsd.core.config.loader import parse_config
from mailopsd.health.model import CRIT, OK, WARN, Check
from mailopsd.health.service import HealthService, create


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, str, dict[str, Any]]] = []

    def __getattr__(self, level: str) -> Any:
        def log(event: str, **fields: Any) -> None:
            self.events.append((level, event, fields))
        return log


def service(tmp_path: Path) -> tuple[HealthService, Recorder]:
    cfg = parse_config({"daemon": {"state_dir": str(tmp_path / "s"), "run_dir": str(tmp_path)},
                        "health": {"exim_spool": str(tmp_path / "spool"),
                                   "paniclog": str(tmp_path / "paniclog"), "spamd_log": ""}})
    svc = HealthService(cfg)
    rec = Recorder()
    svc.log = rec
    return svc, rec


def frozen(status: str, n: int = 1) -> Check:
    return Check("exim_frozen", status, f"{n} frozen", "thaw", event="exim_queue_frozen",
                 fields={"frozen": n})


def test_event_on_turning_bad_and_on_recovery_not_while_it_stays_bad(tmp_path: Path) -> None:
    svc, rec = service(tmp_path)
    svc._events([frozen(OK)])
    assert rec.events == []  # healthy from the start: nothing to say
    svc._events([frozen(WARN)])
    svc._events([frozen(WARN, 2)])
    assert [(lvl, ev) for lvl, ev, _f in rec.events] == [("warning", "exim_queue_frozen")]
    assert rec.events[0][2] == {"check": "exim_frozen", "status": WARN, "figure": "1 frozen",
                                "action": "thaw", "frozen": 1}
    svc._events([frozen(CRIT)])
    assert rec.events[-1][0] == "error"
    svc._events([frozen(OK)])
    assert rec.events[-1][:2] == ("info", "health_check_recovered")


def test_new_paniclog_lines_are_events_with_the_line(tmp_path: Path) -> None:
    svc, rec = service(tmp_path)
    panic = tmp_path / "paniclog"
    panic.write_text("2026-12-07 09:00:00 old panic from before the start\n")
    svc._local_loop()
    # what was there at start: one status event naming the last line, no per-line event
    assert [ev for _l, ev, _f in rec.events] == ["exim_paniclog_written"]
    assert rec.events[0][2]["status"] == "CRIT" and "old panic" in rec.events[0][2]["line"]
    with panic.open("a") as f:
        f.write("2026-12-07 10:00:00 failed to expand condition\n")
    svc._local_loop()
    assert len(rec.events) == 2  # the new line, not a second status event
    level, event, fields = rec.events[1]
    assert (level, event) == ("error", "exim_paniclog_written")
    assert fields["line"].endswith("failed to expand condition") and "status" not in fields
    svc._local_loop()
    assert len(rec.events) == 2


def test_service_is_off_only_when_health_and_metrics_both_are(tmp_path: Path) -> None:
    off = parse_config({"health": {"enabled": False}})
    assert create(off, None) is None
    textfile = parse_config({"health": {"enabled": False},
                             "metrics": {"textfile": str(tmp_path / "m.prom")}})
    assert isinstance(create(textfile, None), HealthService)
