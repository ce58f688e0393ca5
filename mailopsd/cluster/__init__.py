"""Cluster: several MX hosts share bans, rule hits and Bayes through one PostgreSQL database.

Owns the PostgreSQL schema (versioned, ``mailopsd cluster init``), the node's sync thread
(publish through a local outbox, LISTEN/NOTIFY push, catch-up by row id, trust checks on rows
from other nodes) and ``cluster status``. May import core and firewall (canonical addresses);
psycopg is imported only when ``[cluster]`` is configured. The blocker reaches it only through
the small link interface in ``mailopsd.blocker.hooks`` that the daemon hands over (the blocker
never imports this package).
"""
