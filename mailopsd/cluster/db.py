"""Connections to the shared store: DSN from config or file, psycopg imported only here."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mailopsd.core.errors import MailopsError

if TYPE_CHECKING:
    from mailopsd.core.config.schema_cluster import ClusterConfig

SCHEMA = "mailopsd"  # the PostgreSQL schema (namespace) holding every cluster table
BANS_CHANNEL = "mailopsd_bans"
HITS_CHANNEL = "mailopsd_hits"


class ClusterError(MailopsError):
    """The shared store is unreachable, refused a query, or is not set up."""


def psycopg() -> Any:
    """The psycopg module; raises ClusterError naming the Debian package when missing."""
    try:
        import psycopg as mod
    except ImportError as exc:  # an optional dependency: only [cluster] needs it
        raise ClusterError("[cluster] needs psycopg 3: apt-get install python3-psycopg "
                           f"(or pip install 'mailopsd[cluster]'): {exc}") from exc
    return mod


def resolve_dsn(cfg: ClusterConfig) -> str:
    """The DSN from ``dsn`` or the first non-comment line of ``dsn_file``; raises ClusterError."""
    if cfg.dsn:
        return cfg.dsn
    try:
        with open(cfg.dsn_file, encoding="utf-8") as fh:
            for line in fh:
                line = line.strip()
                if line and not line.startswith("#"):
                    return line
    except OSError as exc:
        raise ClusterError(f"cluster.dsn_file: cannot read {cfg.dsn_file}: {exc}") from exc
    raise ClusterError(f"cluster.dsn_file: {cfg.dsn_file} holds no DSN")


def connect(cfg: ClusterConfig, *, autocommit: bool = True, dsn: str | None = None) -> Any:
    """A new psycopg connection to the read-write primary; raises ClusterError.

    libpq does the failover part: a DSN naming several hosts with
    ``target_session_attrs=read-write`` connects to whichever is the primary now. Keepalives,
    ``tcp_user_timeout`` (unacknowledged data) and a statement timeout make a vanished server
    an error within seconds, never a hang.
    """
    pg = psycopg()
    timeout = max(1, round(float(cfg.connect_timeout)))
    try:
        conn = pg.connect(dsn or resolve_dsn(cfg), autocommit=autocommit,
                          connect_timeout=timeout, application_name=f"mailopsd@{cfg.node_name}",
                          keepalives=1, keepalives_idle=5, keepalives_interval=2,
                          keepalives_count=2, tcp_user_timeout=timeout * 1000,
                          options=f"-c statement_timeout={timeout * 1000 + 2000}")
    except pg.Error as exc:
        raise ClusterError(f"cannot connect to the cluster store: {first_line(exc)}") from exc
    return conn


def first_line(exc: BaseException) -> str:
    """The first line of an error message (libpq's are multi-line), without the password."""
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__
