"""make-forwards: give every mailbox user without a ~/.forward the spam-to-Trash Exim filter.

Was make-forwards.pl, which the seed ran by hand. The template (``template`` key, default the
built-in copy of etc/forward.template) is tested with ``exim -bf`` on a spam and a non-spam
sample BEFORE anything is written: a template Exim rejects fails the job and writes nothing.
Each file is then written as its user (see mailopsd.forward.forwards), never over an existing
``.forward`` (file, directory or symlink - a symlink is never followed), and tested again in
place with ``exim -bf`` as the user. ``--dry-run`` reports what would be written.
"""

from __future__ import annotations

import os
from typing import Any, cast

from mailopsd.core.users import Account
from mailopsd.daemon.runner import JobContext, JobResult

_EVENTS = {"symlink": "forward_symlink_untouched", "other": "forward_not_a_file_untouched",
           "no_home": "forward_skipped_no_home", "home_not_owned": "forward_skipped_home_not_owned"}


def _accounts(ctx: JobContext) -> tuple[list[Account], list[str]]:
    """The mailbox accounts, and the configured user names that do not exist."""
    from mailopsd.core.errors import MailopsError
    from mailopsd.core.users import mailbox_accounts

    mb = ctx.config.mailboxes
    if not mb.users:
        return list(mailbox_accounts((), mb.min_uid, mb.max_uid, mb.exclude)), []
    found: list[Account] = []
    unknown: list[str] = []
    for name in mb.users:  # one at a time: an unknown name must not hide the others
        try:
            found.extend(mailbox_accounts((name,), mb.min_uid, mb.max_uid, mb.exclude))
        except MailopsError:
            unknown.append(name)
    return found, unknown


def run(ctx: JobContext) -> JobResult:
    """Check the template, then write the missing .forward files; returns counts per outcome."""
    from mailopsd.core.config.schema_forwards import MakeForwardsJob
    from mailopsd.core.errors import MailopsError
    from mailopsd.forward import forwards

    settings = cast(MakeForwardsJob, ctx.settings)
    try:
        text = forwards.load_template(settings.template)
    except forwards.ForwardsError as exc:
        return JobResult(ok=False, message=str(exc))
    exim = ctx.config.binaries.exim
    checked = False
    if settings.check_with_exim and os.path.exists(exim):
        try:
            results = forwards.check_template(text, exim, settings.command_timeout)
        except forwards.ForwardsError as exc:
            ctx.log.error("forward_template_rejected", template=settings.template or "built-in",
                          error=str(exc))
            return JobResult(ok=False, counts={"written": 0},
                             message=f"template refused, nothing written: {exc}")
        checked = True
        ctx.log.info("forward_template_checked", template=settings.template or "built-in",
                     **{f"{r.sample}_actions": list(r.actions) for r in results})
    elif settings.check_with_exim:
        ctx.log.warning("forward_template_unchecked", reason=f"{exim} not found")

    accounts, unknown = _accounts(ctx)
    for name in unknown:
        ctx.log.warning("forward_user_unknown", user=name)
    outcome: dict[str, list[str]] = {k: [] for k in (
        "written", "would_write", "existing", "symlink", "other", "no_home", "home_not_owned",
        "failed")}
    for acct in accounts:
        ctx.check_cancel()
        state = forwards.forward_state(acct)
        if state == "file":
            outcome["existing"].append(acct.name)
            ctx.log.info("forward_exists", user=acct.name, path=f"{acct.home}/.forward")
            continue
        if state != "missing":  # a symlink is reported, never followed; homes are skipped
            outcome[state].append(acct.name)
            ctx.log.warning(_EVENTS[state], user=acct.name, home=acct.home)
            continue
        if ctx.dry_run:
            outcome["would_write"].append(acct.name)
            ctx.log.info("forward_would_write", user=acct.name, path=f"{acct.home}/.forward")
            continue
        try:
            forwards.write_forward(acct, text, settings.command_timeout)
            if checked:
                forwards.check_filter_file(os.path.join(acct.home, ".forward"), exim,
                                           settings.command_timeout, account=acct)
        except forwards.ForwardExistsError:
            outcome["existing"].append(acct.name)  # appeared since we looked: theirs now
            ctx.log.info("forward_exists", user=acct.name, path=f"{acct.home}/.forward")
            continue
        except MailopsError as exc:
            outcome["failed"].append(acct.name)
            ctx.log.error("forward_write_failed", user=acct.name, error=str(exc))
            continue
        outcome["written"].append(acct.name)
        ctx.log.info("forward_written", user=acct.name, path=f"{acct.home}/.forward")

    counts: dict[str, Any] = {k: len(v) for k, v in outcome.items()}
    counts.update(users=len(accounts), unknown_users=len(unknown), template_checked=checked,
                  dry_run=ctx.dry_run)
    ctx.log.info("make_forwards_summary", **counts,
                 **{f"{k}_users": v for k, v in outcome.items() if v})
    if outcome["failed"]:
        return JobResult(ok=False, counts=counts,
                         message=f"could not write .forward for {', '.join(outcome['failed'])}")
    return JobResult(ok=True, counts=counts)
