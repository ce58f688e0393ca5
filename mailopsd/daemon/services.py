"""The service contract and its supervision: start, stop and watch the daemon's services.

A service (the blocker, the Sent fixer, and later ones) is made by a factory named in
``mailopsd.daemon.registry.SERVICES``: ``create(config, state) -> Service | None`` (None when the
config leaves it off). Stopping one never keeps the others from stopping.
"""

from __future__ import annotations

from typing import Any, Protocol

from mailopsd.core.config.schema import Config
from mailopsd.core.state import StateDB
from mailopsd.daemon.registry import SERVICES, service_factory


class Service(Protocol):
    """A long-running part of the daemon (the blocker, the Sent fixer)."""

    name: str

    def start(self) -> None:
        """Start working (threads, watches); raises MailopsError if it cannot."""

    def stop(self, timeout: float) -> None:
        """Stop within ``timeout`` seconds, saving what must survive a restart."""

    def alive(self) -> bool:
        """Whether all of its threads are still working (feeds the systemd watchdog)."""


class Services:
    """The running services by id, started in registry order."""

    def __init__(self, log: Any) -> None:
        self.log = log
        self.running: dict[str, Service] = {}

    def start(self, config: Config, state: StateDB) -> None:
        """Create and start every service the config enables; raises MailopsError."""
        for service_id in SERVICES:
            service = service_factory(service_id)(config, state)
            if service is None:
                continue
            bind = getattr(service, "bind", None)
            if bind is not None:  # e.g. the blocker takes the cluster link started before it
                bind(self.running)
            service.start()
            self.running[service_id] = service
            self.log.info("service_started", service=service_id)

    def stop(self, timeout: float) -> None:
        """Stop every running service, each within ``timeout``; errors are logged, not raised."""
        for service_id, service in list(self.running.items()):
            try:
                service.stop(timeout)
                self.log.info("service_stopped", service=service_id)
            except Exception as exc:  # keep stopping the others
                self.log.error("service_stop_failed", service=service_id, error=str(exc))
        self.running.clear()

    def alive(self) -> bool:
        """Whether every running service says it is alive."""
        return all(s.alive() for s in self.running.values())

    def __bool__(self) -> bool:
        return bool(self.running)

    def ids(self) -> list[str]:
        """The ids of the running services, sorted."""
        return sorted(self.running)
