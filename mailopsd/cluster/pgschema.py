"""The shared store's schema in PostgreSQL: versioned, idempotent, applied by ``cluster init``.

Everything lives in the PostgreSQL schema ``mailopsd``:

- ``nodes``: one row per node (its role, last seen, the last ban id it applied, its queue).
- ``bans``: the append-only log of ban and unban decisions. Readers take rows by ``id`` (a
  NOTIFY only says "look"), so a row inserted by hand with SQL is seen like any other.
  ``key`` is the publishing node's idempotency key: a publish retried after a lost COMMIT
  acknowledgement is not stored twice.
- ``current``: the bans in force, one row per address, kept by a trigger (for ``cluster
  status``, a new node's start, and Exim's pgsql ACL lookup).
- ``hits``: rule hits for cluster-wide counting, pruned after ``cluster.hits_keep``.

Row-level security lets a node's role insert rows only for the node registered to it; the
schema owner (the admin running ``cluster init``) is not limited.
"""

from __future__ import annotations

from typing import Any

from mailopsd.cluster.db import BANS_CHANNEL, HITS_CHANNEL, SCHEMA

V1 = f"""
CREATE TABLE {SCHEMA}.nodes (
    name text PRIMARY KEY CHECK (name ~ '^[A-Za-z0-9._-]{{1,63}}$'),
    role name NOT NULL DEFAULT current_user,
    first_seen timestamptz NOT NULL DEFAULT now(),
    last_seen timestamptz NOT NULL DEFAULT now(),
    applied_id bigint NOT NULL DEFAULT 0,
    queued integer NOT NULL DEFAULT 0,
    version text NOT NULL DEFAULT ''
);
CREATE TABLE {SCHEMA}.bans (
    id bigserial PRIMARY KEY,
    action text NOT NULL CHECK (action IN ('ban', 'unban')),
    ip text NOT NULL,
    rule text NOT NULL DEFAULT '',
    reason text NOT NULL DEFAULT '',
    hits integer NOT NULL DEFAULT 0,
    decided timestamptz NOT NULL DEFAULT now(),
    expires timestamptz,
    node text NOT NULL,
    author name NOT NULL DEFAULT current_user,
    key text NOT NULL UNIQUE,
    inserted timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX bans_by_inserted ON {SCHEMA}.bans (inserted);
CREATE TABLE {SCHEMA}.current (
    ip text PRIMARY KEY,
    net cidr NOT NULL,
    rule text NOT NULL,
    decided timestamptz NOT NULL,
    expires timestamptz,
    node text NOT NULL,
    ban_id bigint NOT NULL
);
CREATE INDEX current_by_net ON {SCHEMA}.current USING gist (net inet_ops);
CREATE TABLE {SCHEMA}.hits (
    id bigserial PRIMARY KEY,
    node text NOT NULL,
    author name NOT NULL DEFAULT current_user,
    rule text NOT NULL,
    ip text NOT NULL,
    seen timestamptz NOT NULL
);
CREATE INDEX hits_by_seen ON {SCHEMA}.hits (seen);

-- SECURITY DEFINER: node roles cannot write `current` themselves, only through the log
CREATE FUNCTION {SCHEMA}.keep_current() RETURNS trigger LANGUAGE plpgsql
    SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE n cidr;
BEGIN
    BEGIN
        n := NEW.ip::cidr;
    EXCEPTION WHEN others THEN
        RETURN NULL;  -- not an address: kept in the log (readers refuse it), never in force
    END;
    IF NEW.action = 'ban' THEN
        INSERT INTO {SCHEMA}.current AS c (ip, net, rule, decided, expires, node, ban_id)
        VALUES (NEW.ip, n, NEW.rule, NEW.decided, NEW.expires, NEW.node, NEW.id)
        ON CONFLICT (ip) DO UPDATE SET net = EXCLUDED.net, rule = EXCLUDED.rule,
            decided = EXCLUDED.decided, expires = EXCLUDED.expires, node = EXCLUDED.node,
            ban_id = EXCLUDED.ban_id
        WHERE c.decided <= EXCLUDED.decided;
    ELSE
        -- an unban lifts the bans decided before it (2 s for clocks a little apart)
        DELETE FROM {SCHEMA}.current
        WHERE ip = NEW.ip AND decided <= NEW.decided + interval '2 seconds';
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER bans_current AFTER INSERT ON {SCHEMA}.bans
    FOR EACH ROW EXECUTE FUNCTION {SCHEMA}.keep_current();

CREATE FUNCTION {SCHEMA}.notify_bans() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN PERFORM pg_notify('{BANS_CHANNEL}', ''); RETURN NULL; END $$;
CREATE TRIGGER bans_notify AFTER INSERT ON {SCHEMA}.bans
    FOR EACH STATEMENT EXECUTE FUNCTION {SCHEMA}.notify_bans();
CREATE FUNCTION {SCHEMA}.notify_hits() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN PERFORM pg_notify('{HITS_CHANNEL}', ''); RETURN NULL; END $$;
CREATE TRIGGER hits_notify AFTER INSERT ON {SCHEMA}.hits
    FOR EACH STATEMENT EXECUTE FUNCTION {SCHEMA}.notify_hits();

ALTER TABLE {SCHEMA}.nodes ENABLE ROW LEVEL SECURITY;
CREATE POLICY nodes_read ON {SCHEMA}.nodes FOR SELECT USING (true);
CREATE POLICY nodes_insert_own ON {SCHEMA}.nodes FOR INSERT WITH CHECK (role = current_user);
CREATE POLICY nodes_update_own ON {SCHEMA}.nodes FOR UPDATE
    USING (role = current_user) WITH CHECK (role = current_user);
ALTER TABLE {SCHEMA}.bans ENABLE ROW LEVEL SECURITY;
CREATE POLICY bans_read ON {SCHEMA}.bans FOR SELECT USING (true);
CREATE POLICY bans_insert_own ON {SCHEMA}.bans FOR INSERT WITH CHECK (
    author = current_user AND EXISTS (
        SELECT 1 FROM {SCHEMA}.nodes n WHERE n.name = node AND n.role = current_user));
ALTER TABLE {SCHEMA}.hits ENABLE ROW LEVEL SECURITY;
CREATE POLICY hits_read ON {SCHEMA}.hits FOR SELECT USING (true);
CREATE POLICY hits_insert_own ON {SCHEMA}.hits FOR INSERT WITH CHECK (
    author = current_user AND EXISTS (
        SELECT 1 FROM {SCHEMA}.nodes n WHERE n.name = node AND n.role = current_user));
CREATE POLICY hits_prune_own ON {SCHEMA}.hits FOR DELETE USING (author = current_user);
"""

# (version, what, SQL): append only; `cluster init` applies every version above the stored one
MIGRATIONS: tuple[tuple[int, str, str], ...] = (
    (1, "nodes, ban log, bans in force, shared hits", V1),
)
SCHEMA_VERSION = MIGRATIONS[-1][0]
LOCK_KEY = 0x6D61696C  # pg_advisory_xact_lock: two `cluster init` at once wait for each other


def current_version(conn: Any) -> int:
    """The schema version in the store (0 when ``cluster init`` never ran)."""
    row = conn.execute("SELECT to_regclass(%s)", (f"{SCHEMA}.meta",)).fetchone()
    if row is None or row[0] is None:
        return 0
    row = conn.execute(f"SELECT value FROM {SCHEMA}.meta WHERE key = 'schema_version'"
                       ).fetchone()
    return int(row[0]) if row else 0


def migrate(conn: Any) -> tuple[int, int]:
    """Create or upgrade the schema in one transaction; returns (old, new) versions.

    Idempotent: running it again changes nothing. ``conn`` must be autocommit.
    """
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (LOCK_KEY,))
        conn.execute(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}")
        conn.execute(f"CREATE TABLE IF NOT EXISTS {SCHEMA}.meta "
                     "(key text PRIMARY KEY, value text NOT NULL)")
        old = current_version(conn)
        for version, _what, sql in MIGRATIONS:
            if version > old:
                conn.execute(sql)
        conn.execute(f"INSERT INTO {SCHEMA}.meta (key, value) VALUES ('schema_version', %s) "
                     "ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
                     (str(SCHEMA_VERSION),))
    return old, max(old, SCHEMA_VERSION)


def grants(role: str = "mailopsd_node") -> str:
    """The SQL an admin runs for a node role that needs no DDL (printed by ``cluster init``)."""
    r = '"' + role.replace('"', '""') + '"'
    return "\n".join([
        f"-- one LOGIN role per node, e.g. CREATE ROLE {r} LOGIN PASSWORD '...';",
        f"GRANT USAGE ON SCHEMA {SCHEMA} TO {r};",
        f"GRANT SELECT ON {SCHEMA}.meta, {SCHEMA}.current TO {r};",
        f"GRANT SELECT, INSERT, UPDATE ON {SCHEMA}.nodes TO {r};",
        f"GRANT SELECT, INSERT ON {SCHEMA}.bans, {SCHEMA}.hits TO {r};",
        f"GRANT DELETE ON {SCHEMA}.hits TO {r};  -- lets nodes prune old hits",
        f"GRANT USAGE ON SEQUENCE {SCHEMA}.bans_id_seq, {SCHEMA}.hits_id_seq TO {r};",
        f"-- Exim's pgsql lookup role (read only): GRANT USAGE ON SCHEMA {SCHEMA}, "
        f"SELECT ON {SCHEMA}.current TO mailopsd_exim;",
    ])
