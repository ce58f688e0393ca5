"""Mail-server health: checks (queue, paniclog, spamd, Bayes, DNSBL, TLS, DNS records), the
Prometheus metrics built from them, the daemon's health service and `tls-deploy`.

Owns: reading Exim's spool and paniclog directly, spamd's `result:` log lines, DNS look-ups
(dnspython), TLS probes, the metrics registry (prometheus_client, imported only when [metrics]
is set or a scrape is asked for). May import: core, spam (Bayes counts); blocker and job figures
are read from the state database, not from the blocker's code.
"""
