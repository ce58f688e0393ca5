"""bayes-stats: the daily Bayes numbers (was the seed's housekeeping line
"N spams and M hams have been processed with T tokens.").

Reads ``sa-learn --dump magic`` as the database owner and logs ``bayes_stats`` with NSPAM,
NHAM and NTOKENS; warns while Bayes is not active yet (fewer than 200 of either class) or the
classes are far out of balance. A database that does not exist yet is an event, not a failure.
"""

from __future__ import annotations

from mailopsd.daemon.runner import JobContext, JobResult


def run(ctx: JobContext) -> JobResult:
    """Log the database's counts and any warnings about them."""
    from mailopsd.spam.bayes_db import BayesDB, assess

    job = ctx.config.jobs.bayes_stats
    db = BayesDB.from_config(ctx.config)
    magic = db.magic(float(job.timeout), ctx.cancel)
    if magic is None:
        ctx.log.warning("bayes_db_missing", owner=db.owner.name, path=db.prefix,
                        detail="no Bayes database yet: learn-spam creates it")
        return JobResult(counts={"db_exists": False})
    ctx.log.info("bayes_stats", nspam=magic.nspam, nham=magic.nham, ntokens=magic.ntokens,
                 sentence=magic.sentence(), owner=db.owner.name, path=db.prefix)
    warnings = assess(magic, job.min_messages, job.max_ratio)
    for event, message in warnings:
        ctx.log.warning(event, nspam=magic.nspam, nham=magic.nham, detail=message)
    return JobResult(counts={"nspam": magic.nspam, "nham": magic.nham,
                             "ntokens": magic.ntokens, "warnings": len(warnings)})
