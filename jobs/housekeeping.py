"""housekeeping: keep the state database small and tidy (no seed script did this).

Prunes job history and lifted bans older than ``daemon.history_days`` (a lifted ban is kept that
long so a repeat offender's next ban still grows), marks runs whose process died as interrupted,
checkpoints SQLite's write-ahead log and lets SQLite refresh its query statistics.
"""

from __future__ import annotations

import time

from mailopsd.daemon.runner import JobContext, JobResult


def run(ctx: JobContext) -> JobResult:
    """Prune the state database; returns counts of what was removed and the database size."""
    cutoff = time.time() - ctx.config.daemon.history_days * 86400
    if ctx.dry_run:
        conn = ctx.state.connect()
        try:
            runs = conn.execute("SELECT COUNT(*) FROM job_runs WHERE started < ? AND "
                                "result != 'running'", (cutoff,)).fetchone()[0]
        finally:
            conn.close()
        return JobResult(counts={"history_pruned": runs, "dry_run": True})
    from mailopsd.blocker.store import BanStore

    runs = ctx.state.prune_history(cutoff)
    bans = BanStore(ctx.state, source="housekeeping").prune(cutoff)
    interrupted = ctx.state.interrupt_stale_runs()
    ctx.check_cancel()
    conn = ctx.state.connect()
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        conn.execute("PRAGMA optimize")
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
        page_size = conn.execute("PRAGMA page_size").fetchone()[0]
    finally:
        conn.close()
    return JobResult(counts={"history_pruned": runs, "bans_pruned": bans,
                             "interrupted": interrupted,
                             "db_bytes": pages * page_size})
