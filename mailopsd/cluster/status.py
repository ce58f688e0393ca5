"""``mailopsd cluster status``: every node, when it was last seen, how far behind it is, and the
bans it published (all rows, and those in force now)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from mailopsd.cluster.db import SCHEMA


@dataclass(frozen=True)
class NodeStatus:
    """One node as the store sees it."""

    node: str
    role: str
    first_seen: float
    last_seen: float
    seen_ago: float  # seconds since its last heartbeat
    applied_id: int
    behind: int  # ban rows in the store after the last one it applied
    queued: int  # decisions waiting in its outbox at its last heartbeat
    published: int  # ban rows it wrote
    in_force: int  # bans it decided that are in force now
    version: str

    def as_dict(self) -> dict[str, Any]:
        """Plain dict for JSON output."""
        return asdict(self)


@dataclass(frozen=True)
class StoreStatus:
    """The store as a whole."""

    schema_version: int
    newest_id: int
    bans_in_force: int
    hits: int
    nodes: list[NodeStatus]

    def as_dict(self) -> dict[str, Any]:
        """Plain dict for JSON output."""
        return {**asdict(self), "nodes": [n.as_dict() for n in self.nodes]}


def read_status(conn: Any) -> StoreStatus:
    """Query the store (read only); raises psycopg errors."""
    from mailopsd.cluster.pgschema import current_version

    version = current_version(conn)
    newest = conn.execute(f"SELECT coalesce(max(id), 0) FROM {SCHEMA}.bans").fetchone()[0]
    in_force = conn.execute(f"SELECT count(*) FROM {SCHEMA}.current WHERE expires IS NULL "
                            "OR expires > now()").fetchone()[0]
    hits = conn.execute(f"SELECT count(*) FROM {SCHEMA}.hits").fetchone()[0]
    rows = conn.execute(
        "SELECT n.name, n.role, extract(epoch FROM n.first_seen)::float8, "
        "extract(epoch FROM n.last_seen)::float8, "
        "extract(epoch FROM now() - n.last_seen)::float8, n.applied_id, n.queued, n.version, "
        f"(SELECT count(*) FROM {SCHEMA}.bans b WHERE b.node = n.name AND b.action = 'ban'), "
        f"(SELECT count(*) FROM {SCHEMA}.current c WHERE c.node = n.name "
        "AND (c.expires IS NULL OR c.expires > now())) "
        f"FROM {SCHEMA}.nodes n ORDER BY n.name").fetchall()
    nodes = [NodeStatus(node=r[0], role=r[1], first_seen=r[2], last_seen=r[3],
                        seen_ago=round(r[4], 1), applied_id=r[5],
                        behind=max(0, newest - r[5]), queued=r[6], version=r[7],
                        published=r[8], in_force=r[9]) for r in rows]
    return StoreStatus(schema_version=version, newest_id=newest, bans_in_force=in_force,
                       hits=hits, nodes=nodes)
