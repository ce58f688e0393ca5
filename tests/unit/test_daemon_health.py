"""The watchdog is fed only while the scheduler and every service are alive."""

from __future__ import annotations

from pathlib import Path

from mailopsd.core.config import parse_config
from mailopsd.daemon.main import Daemon
from mailopsd.daemon.scheduling import make_scheduler


class FakeService:
    name = "fake"

    def __init__(self) -> None:
        self.healthy = True

    def start(self) -> None:
        pass

    def stop(self, timeout: float) -> None:
        pass

    def alive(self) -> bool:
        return self.healthy


def test_alive_requires_running_scheduler_and_live_services(tmp_path: Path) -> None:
    cfg = parse_config({"daemon": {"state_dir": str(tmp_path / "s"),
                                   "run_dir": str(tmp_path / "r")}})
    daemon = Daemon(cfg, str(tmp_path / "c.toml"))
    assert not daemon.alive(), "no scheduler yet"
    daemon.scheduler = make_scheduler(cfg)
    daemon._schedule_jobs()
    daemon.scheduler.start()
    try:
        service = FakeService()
        daemon.services.running["fake"] = service
        assert daemon.alive()
        service.healthy = False
        assert not daemon.alive()
        service.healthy = True
        assert "jobs scheduled" in daemon.status_line()
        assert "services: fake" in daemon.status_line()
    finally:
        daemon.scheduler.shutdown(wait=False)
    assert not daemon.alive(), "a stopped scheduler must stop the watchdog pings"


def test_scheduler_job_defaults_are_explicit(tmp_path: Path) -> None:
    cfg = parse_config({"daemon": {"state_dir": str(tmp_path / "s"),
                                   "run_dir": str(tmp_path / "r"),
                                   "misfire_grace_time": "30m"}})
    sched = make_scheduler(cfg)
    assert sched._job_defaults == {"misfire_grace_time": 1800, "coalesce": True,
                                   "max_instances": 1}
