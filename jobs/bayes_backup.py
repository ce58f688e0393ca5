"""bayes-backup: a validated, checksummed backup of spamd's Bayes database (the seed had only a
manual ``sa-learn --backup``).

Syncs the journal, dumps the database as its owner, checks the dump against ``--dump magic``,
stores it gzipped with a sha256 manifest and prunes by retention (see mailopsd.spam.bayes_ops).
"""

from __future__ import annotations

from mailopsd.daemon.runner import JobContext, JobResult


def run(ctx: JobContext) -> JobResult:
    """One backup; fails if the dump does not check out or cannot be stored."""
    from mailopsd.spam.bayes_ops import backup_now

    counts = backup_now(ctx.config, ctx.log, cancel=ctx.cancel, dry_run=ctx.dry_run)
    return JobResult(counts=counts)
