"""``mailopsd cluster``: set up the shared PostgreSQL store and see every node's state."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from mailopsd.cli.common import EXIT_JOB_FAILED, EXIT_OK, EXIT_USAGE, add_json_flag, load


def register(sub: Any) -> None:
    """Add ``cluster`` and its subcommands."""
    p = sub.add_parser("cluster", help="shared bans and hits across MX hosts (PostgreSQL)",
                       description="Several MX hosts share bans, hit counts and Bayes through "
                       "one PostgreSQL database ([cluster] in the config; docs/cluster.md).")
    csub = p.add_subparsers(dest="cluster_command", metavar="ACTION", title="actions")
    q = csub.add_parser("init", help="create or upgrade the schema; print the node GRANTs",
                        description="Create or upgrade the mailopsd schema in the store "
                        "(versioned, idempotent; run as the database owner, e.g. with --dsn) "
                        "and print the GRANTs a node role needs (no DDL).")
    q.add_argument("--dsn", help="connect with this DSN instead of [cluster] dsn/dsn_file")
    q.add_argument("--role", default="mailopsd_node",
                   help="node role named in the printed GRANTs (default: mailopsd_node)")
    q.set_defaults(handler=cmd_init)
    q = csub.add_parser("status", help="nodes, last seen, how far behind, bans published",
                        description="Every node in the store: last heartbeat, how many ban "
                        "rows it has not applied yet, its queue, the bans it published.")
    q.add_argument("--dsn", help="connect with this DSN instead of [cluster] dsn/dsn_file")
    add_json_flag(q)
    q.set_defaults(handler=cmd_status)
    p.set_defaults(handler=lambda _args: (p.print_help(sys.stderr), EXIT_USAGE)[1])


def _connect(args: argparse.Namespace) -> Any:
    from mailopsd.core.config.schema_cluster import ClusterConfig

    cfg = load(args, log=False)
    if cfg.cluster is None and not args.dsn:
        print("mailopsd: no [cluster] table in the configuration (and no --dsn)",
              file=sys.stderr)
        return None
    from mailopsd.cluster.db import connect

    ccfg = cfg.cluster or ClusterConfig(dsn=args.dsn)
    return connect(ccfg, dsn=args.dsn)


def cmd_init(args: argparse.Namespace) -> int:
    """Create or upgrade the schema and print the GRANTs."""
    from mailopsd.cluster import pgschema
    from mailopsd.cluster.db import first_line, psycopg

    conn = _connect(args)
    if conn is None:
        return EXIT_USAGE
    try:
        with conn:
            old, new = pgschema.migrate(conn)
    except psycopg().Error as exc:
        print(f"mailopsd: cluster init failed (run it as the database owner): "
              f"{first_line(exc)}", file=sys.stderr)
        return EXIT_JOB_FAILED
    what = "created" if old == 0 else ("upgraded" if new > old else "already current")
    print(f"-- mailopsd cluster schema version {new} ({what}"
          + (f", was {old})" if old and new > old else ")"))
    print(pgschema.grants(args.role))
    return EXIT_OK


def cmd_status(args: argparse.Namespace) -> int:
    """Print every node's state; exit 1 when the schema is missing or outdated."""
    from mailopsd.cluster.db import first_line, psycopg

    conn = _connect(args)
    if conn is None:
        return EXIT_USAGE
    try:
        return _status(args, conn)
    except psycopg().Error as exc:
        print(f"mailopsd: cluster status failed: {first_line(exc)}", file=sys.stderr)
        return EXIT_JOB_FAILED


def _status(args: argparse.Namespace, conn: Any) -> int:
    import time

    from mailopsd.cli.common import print_json, print_table
    from mailopsd.cluster import pgschema
    from mailopsd.cluster.status import read_status

    with conn:
        version = pgschema.current_version(conn)
        if version != pgschema.SCHEMA_VERSION:
            print(f"mailopsd: the store's schema is version {version}, this mailopsd needs "
                  f"{pgschema.SCHEMA_VERSION}: run `mailopsd cluster init` as the database "
                  "owner", file=sys.stderr)
            return EXIT_JOB_FAILED
        st = read_status(conn)
    if args.json:
        print_json(st.as_dict())
    else:
        print(f"schema {st.schema_version}, newest ban row {st.newest_id}, "
              f"{st.bans_in_force} bans in force, {st.hits} shared hits")
        now = time.time()
        print_table(["NODE", "ROLE", "LAST SEEN", "BEHIND", "QUEUED", "PUBLISHED", "IN FORCE"],
                    [[n.node, n.role, f"{round(now - n.last_seen)}s ago", n.behind, n.queued,
                      n.published, n.in_force] for n in st.nodes])
    return EXIT_OK
