"""The metrics registry: every metric name, its help and labels, and its exposition.

prometheus_client is imported only here, and this module only when [metrics] is set or a
scrape is asked for (`mailopsd health --prometheus`). Samples come from a callable that returns
the latest ``Samples`` (the health service's snapshot plus scrape-time figures: the spool and
the state database). Every family is exposed from the start: ``# HELP``/``# TYPE`` even before
its first sample.
"""

from __future__ import annotations

import os
import tempfile
import threading
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import Collector, CollectorRegistry

from mailopsd.health.model import Samples

# name -> (type, help, label names). Counters are named with their _total suffix.
METRICS: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "mailopsd_bans_active": ("gauge", "Addresses banned now, by firewall backend and rule.",
                             ("backend", "rule")),
    "mailopsd_bans_total": ("counter", "Bans made, by rule (from the state database).",
                            ("rule",)),
    "mailopsd_log_lines_total": ("counter", "Mainlog lines the blocker has read.", ()),
    "mailopsd_log_lag_seconds": ("gauge", "Age of the first mainlog line the blocker has not "
                                 "read yet (0: it is at the end).", ()),
    "mailopsd_log_unread_bytes": ("gauge", "Mainlog bytes the blocker has not read yet.", ()),
    "mailopsd_job_last_success_timestamp_seconds": ("gauge", "When each job last succeeded.",
                                                    ("job",)),
    "mailopsd_job_last_duration_seconds": ("gauge", "How long each job's last run took.",
                                           ("job",)),
    "mailopsd_job_runs_total": ("counter", "Job runs by result.", ("job", "result")),
    "mailopsd_health_check_status": ("gauge", "Each health check: 0 OK, 1 WARN, 2 CRIT, "
                                     "3 UNKNOWN.", ("check",)),
    "exim_queue_messages": ("gauge", "Messages in Exim's queue, frozen ones included "
                            "(exim -bpc).", ()),
    "exim_queue_frozen_messages": ("gauge", "Frozen messages in Exim's queue.", ()),
    "exim_queue_oldest_message_age_seconds": ("gauge", "Age of the oldest queued message "
                                              "(arrival time from its -H file).", ()),
    "exim_paniclog_lines_total": ("counter", "Lines written to Exim's paniclog.", ()),
    "spamd_messages_total": ("counter", "Messages spamd scanned, by result (spam|ham).",
                             ("result",)),
    "spamd_rule_hits_total": ("counter", "spamd results hitting a *_BLOCKED rule (the DNS "
                              "list refused the query).", ("rule",)),
    "spamd_messages_without_bayes_total": ("counter", "Messages spamd scanned without a Bayes "
                                           "score.", ()),
    "spamassassin_bayes_tokens": ("gauge", "Tokens in the Bayes database (sa-learn --dump "
                                  "magic has one total: kind=\"all\").", ("kind",)),
    "spamassassin_bayes_messages": ("gauge", "Messages learned into Bayes, by class.",
                                    ("class",)),
    "spamassassin_rules_age_seconds": ("gauge", "Age of the SpamAssassin rules spamd loads.",
                                       ()),
    "dnsbl_listed": ("gauge", "1 when the address is listed in the zone.", ("zone", "address")),
    "dnsbl_query_refused": ("gauge", "1 when the zone refused our resolver (127.255.255.x).",
                            ("zone",)),
    "tls_certificate_expiry_timestamp_seconds": ("gauge", "Expiry of the certificate served.",
                                                 ("service", "port")),
    "tls_certificate_matches_disk": ("gauge", "1 when the served certificate is the configured "
                                     "file's.", ("service", "port")),
    "dns_dkim_key_matches": ("gauge", "1 when DNS carries the public half of Exim's DKIM key.",
                             ("domain",)),
    "dns_spf_covers_host": ("gauge", "1 when the SPF record passes every sending address.",
                            ("domain",)),
    "dns_dmarc_policy": ("gauge", "1 for the domain's DMARC policy (missing: no record).",
                         ("domain", "policy")),
}


class HealthCollector(Collector):
    """Exposes ``METRICS`` with the samples ``source()`` returns at scrape time."""

    def __init__(self, source: Callable[[], Samples]) -> None:
        self.source = source

    def collect(self) -> Iterator[Metric]:
        samples = self.source()
        for name, (kind, doc, label_names) in METRICS.items():
            family: Any
            if kind == "counter":
                family = CounterMetricFamily(name, doc, labels=label_names)
            else:
                family = GaugeMetricFamily(name, doc, labels=label_names)
            for label_set, value in sorted(samples.get(name).items()):
                values = [dict(label_set).get(n, "") for n in label_names]
                family.add_metric(values, value)
            yield family


def make_registry(source: Callable[[], Samples]) -> CollectorRegistry:
    """A registry of our own (not the process-wide default) holding the health collector."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(HealthCollector(source))
    return registry


def exposition(registry: CollectorRegistry) -> bytes:
    """The text format of a scrape."""
    return generate_latest(registry)


def write_textfile(path: str, registry: CollectorRegistry) -> None:
    """Write the node_exporter textfile atomically, mode 0644 (node_exporter's own user)."""
    data = exposition(registry)
    directory = os.path.dirname(path)
    fd, tmp = tempfile.mkstemp(prefix=".mailopsd.", suffix=".tmp", dir=directory)
    try:
        os.fchmod(fd, 0o644)
        os.write(fd, data)
        os.fsync(fd)
        os.close(fd)
        fd = -1
        os.replace(tmp, path)
    except BaseException:
        if fd >= 0:
            os.close(fd)
        os.unlink(tmp)
        raise


class MetricsServer:
    """/metrics over HTTP on one address, in a thread; stopped by ``stop()``."""

    def __init__(self, host: str, port: int, registry: CollectorRegistry) -> None:
        import socket
        from wsgiref.simple_server import WSGIRequestHandler, make_server

        from prometheus_client.exposition import ThreadingWSGIServer, make_wsgi_app

        class _Quiet(WSGIRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                """No access log on stderr."""

        class _Server(ThreadingWSGIServer):
            address_family = socket.AF_INET6 if ":" in host else socket.AF_INET

        self.httpd = make_server(host, port, make_wsgi_app(registry), _Server,
                                 handler_class=_Quiet)
        self.port = self.httpd.server_port
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="metrics-http",
                                       kwargs={"poll_interval": 0.5}, daemon=True)

    def start(self) -> None:
        """Serve in the background."""
        self.thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop serving and close the socket."""
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout)
