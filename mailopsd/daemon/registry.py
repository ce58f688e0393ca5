"""Which jobs and services exist, by id, without importing them (keeps the CLI fast).

Jobs live in ``jobs/`` (installed as ``mailopsd.jobs``): each module has ``run(ctx) -> JobResult``.
Services live in ``mailopsd/``: each factory is ``create(config, state) -> Service | None``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from mailopsd.core.errors import UnknownJobError

# job id -> (module, one-line summary, the seed script it replaces)
JOBS: dict[str, tuple[str, str, str]] = {
    "learn-spam": ("mailopsd.jobs.learn_spam",
                   "train spamd's Bayes database from users' Spam / Not Spam folders",
                   "learn-spam.pl"),
    "sa-update": ("mailopsd.jobs.sa_update",
                  "update SpamAssassin rules (GPG-verified), lint, reload spamd only if safe",
                  "monthly `sa-update --nogpg` + `service spamassassin restart`"),
    "bayes-backup": ("mailopsd.jobs.bayes_backup",
                     "validated, checksummed backup of spamd's Bayes database, with retention",
                     "manual `sa-learn --backup`"),
    "bayes-stats": ("mailopsd.jobs.bayes_stats",
                    "log the Bayes counts (nspam, nham, ntokens) and warn while Bayes is off",
                    "the daily `sa-learn --dump magic` stats line"),
    "make-forwards": ("mailopsd.jobs.make_forwards",
                      "give mailbox users without a ~/.forward the spam-to-Trash Exim filter",
                      "make-forwards.pl"),
    "housekeeping": ("mailopsd.jobs.housekeeping",
                     "prune old job history and lifted bans from the state database", "-"),
}

# service id -> "module:factory"
SERVICES: dict[str, str] = {
    "blocker": "mailopsd.blocker.service:create",
    "sent-fixer": "mailopsd.sent.service:create",
    "health": "mailopsd.health.service:create",  # issue 18
}


def job_ids() -> tuple[str, ...]:
    """The ids of every implemented job."""
    return tuple(JOBS)


def job_function(job_id: str) -> Callable[[Any], Any]:
    """Import a job's module and return its run(ctx); raises UnknownJobError."""
    try:
        module_name = JOBS[job_id][0]
    except KeyError:
        raise UnknownJobError(f"unknown job {job_id!r}; jobs: {', '.join(JOBS)}") from None
    run: Callable[[Any], Any] = importlib.import_module(module_name).run
    return run


def service_factory(service_id: str) -> Callable[..., Any]:
    """Import a service's factory function."""
    module_name, _, attr = SERVICES[service_id].partition(":")
    factory: Callable[..., Any] = getattr(importlib.import_module(module_name), attr)
    return factory
