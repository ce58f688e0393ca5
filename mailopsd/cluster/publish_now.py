"""``mailopsd bans add/remove`` on a cluster node: publish at once, or leave it queued.

The command writes its decisions into the node's outbox (the state database), then tries to
push exactly those rows to the store itself, so a ban or an unban reaches the other nodes in
milliseconds even when this node's daemon is not running. If the store cannot be reached the
rows stay queued and the daemon pushes them when it can; the publishing key makes a second
copy impossible either way.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mailopsd.cluster.db import SCHEMA, ClusterError, connect, first_line, psycopg
from mailopsd.cluster.outbox import Outbox

if TYPE_CHECKING:
    from mailopsd.core.config.schema import Config
    from mailopsd.core.state import StateDB

# (action, ip, rule, reason, hits, decided, expires)
Decision = tuple[str, str, str, str, int, float, "float | None"]


def publish(config: Config, state: StateDB, decisions: list[Decision]) -> str:
    """Queue ``decisions`` and try to push them now; returns a sentence for the admin."""
    if config.cluster is None or not decisions:
        return ""
    cfg = config.cluster
    outbox = Outbox(state, cfg.node_name)
    try:
        keys = [outbox.put(*d) for d in decisions]
        try:
            pg = psycopg()
            conn = connect(cfg)
        except ClusterError as exc:
            return f"queued for the cluster store ({exc}); the daemon publishes it later"
        try:
            with conn, conn.transaction():
                conn.cursor().executemany(
                    f"INSERT INTO {SCHEMA}.bans (action, ip, rule, reason, hits, decided, "
                    "expires, node, key) VALUES (%s, %s, %s, %s, %s, to_timestamp(%s), "
                    "to_timestamp(%s), %s, %s) ON CONFLICT (key) DO NOTHING",
                    [(*d, cfg.node_name, k) for d, k in zip(decisions, keys, strict=True)])
        except pg.Error as exc:
            return (f"queued for the cluster store ({first_line(exc)}); the daemon publishes "
                    "it later")
        outbox.sent_keys(keys)
        return f"published to the cluster as node {cfg.node_name}"
    finally:
        outbox.close()
