"""The daemon's health service: checks -> events (journald, with fields) and metrics.

Two threads: a fast one every [health] poll_interval (queue, paniclog, spamd log: events within
seconds) and a slow one every [health] interval (DNSBL, TLS, DNS records, Bayes, rules), so a
slow DNS server never delays a paniclog event. An event is logged when a check turns non-OK or
changes status (``health_check_recovered`` when it is OK again), and for every batch of new
paniclog lines. Metrics: /metrics on [metrics] listen and/or the [metrics] textfile.
"""

from __future__ import annotations

import threading
from typing import Any

from mailopsd.core.logs import get_logger
from mailopsd.health.checks import HealthChecks
from mailopsd.health.model import CRIT, EXIT_CODES, OK, Check, Samples


def create(config: Any, state: Any) -> HealthService | None:
    """The service, or None when neither [health] enabled nor [metrics] asks for it."""
    m = config.metrics
    if not (config.health.enabled or m.listen or m.textfile):
        return None
    return HealthService(config)


class HealthService:
    """Runs the checks on a schedule, logs their events, serves their metrics."""

    name = "health"

    def __init__(self, config: Any) -> None:
        self.config = config
        self.log = get_logger("health")
        self.checks = HealthChecks(config)
        self.stopping = threading.Event()
        self.status: dict[str, str] = {}
        self._local: tuple[list[Check], Samples] = ([], Samples())
        self._remote: tuple[list[Check], Samples] = ([], Samples())
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._server: Any = None
        self._registry: Any = None
        self._primed = False  # the first local round has read what the logs already held

    # ---- service contract -------------------------------------------------------------------
    def start(self) -> None:
        """Start the metrics endpoint (if set) and the check threads."""
        m = self.config.metrics
        if m.listen or m.textfile:
            from mailopsd.health.metrics import make_registry

            self._registry = make_registry(self.samples)
        if m.listen:
            self._start_server(m.listen)
        loops = [("health-local", self._local_loop, float(self.config.health.poll_interval))]
        if self.config.health.enabled:
            loops.append(("health-remote", self._remote_loop, float(self.config.health.interval)))
        for name, target, every in loops:
            t = threading.Thread(target=self._loop, args=(target, every), name=name, daemon=True)
            t.start()
            self._threads.append(t)

    def _start_server(self, listen: str) -> None:
        from mailopsd.core.config.schema_health import split_hostport
        from mailopsd.health.metrics import MetricsServer

        host, port = split_hostport(listen)
        try:
            self._server = MetricsServer(host, port, self._registry)
        except OSError as exc:  # a taken port must not take the blocker down with it
            self.log.error("metrics_listen_failed", listen=listen, error=str(exc))
            return
        self._server.start()
        self.log.info("metrics_listening", listen=listen, port=self._server.port)

    def stop(self, timeout: float) -> None:
        """Stop the threads and the endpoint."""
        self.stopping.set()
        for t in self._threads:
            t.join(timeout)
        if self._server is not None:
            self._server.stop(timeout)

    def alive(self) -> bool:
        """Whether every check thread still runs."""
        return all(t.is_alive() for t in self._threads)

    # ---- loops ------------------------------------------------------------------------------
    def _loop(self, step: Any, every: float) -> None:
        while not self.stopping.is_set():
            try:
                step()
            except Exception as exc:  # a bug in one round must not end the service
                self.log.exception("health_round_failed", error=str(exc))
            self.stopping.wait(every)

    def _local_loop(self) -> None:
        if self.config.health.enabled:
            checks, samples = self.checks.local()
            # lines already there at start are not news: the status event below names the last
            new = self.checks.panic.new if self._primed else []
            self._primed = True
            for line in new[-20:]:
                self.log.error("exim_paniclog_written", line=line[:1000],
                               path=self.config.health.paniclog)
            with self._lock:
                self._local = (checks, samples)
            self._events(checks, skip_paniclog=bool(new))
        self._write_textfile()

    def _remote_loop(self) -> None:
        checks, samples = self.checks.remote()
        with self._lock:
            self._remote = (checks, samples)
        self._events(checks)
        self._write_textfile()

    def _events(self, checks: list[Check], skip_paniclog: bool = False) -> None:
        for c in checks:
            before = self.status.get(c.name)
            self.status[c.name] = c.status
            if c.status == before:
                continue
            if c.status == OK:
                if before is not None:
                    self.log.info("health_check_recovered", check=c.name, figure=c.figure)
                continue
            if skip_paniclog and c.name == "exim_paniclog":
                continue
            emit = self.log.error if c.status == CRIT else self.log.warning
            emit(c.event or "health_check_failed", check=c.name, status=c.status,
                 figure=c.figure, action=c.action, **dict(c.fields))

    # ---- metrics ----------------------------------------------------------------------------
    def samples(self) -> Samples:
        """Everything a scrape shows: the latest rounds plus the spool and state database now."""
        out = Samples()
        with self._lock:
            rounds = [self._local, self._remote]
        for _checks, samples in rounds:
            out.update(samples)
        for checks, _samples in rounds:
            for c in checks:
                out.set("mailopsd_health_check_status", EXIT_CODES[c.status], check=c.name)
        out.update(self.checks.scrape_samples())
        return out

    def _write_textfile(self) -> None:
        path = self.config.metrics.textfile
        if not path or self._registry is None:
            return
        from mailopsd.health.metrics import write_textfile

        try:
            write_textfile(path, self._registry)
        except OSError as exc:
            self.log.warning("metrics_textfile_failed", path=path, error=str(exc))
