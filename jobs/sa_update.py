"""sa-update: update SpamAssassin's rules safely (was the seed's monthly `sa-update --nogpg`
followed by `service spamassassin restart`).

As the rules owner (umask 022): import the configured keys, snapshot the versioned rules
directory, run sa-update with GPG verification (unless ``gpg = false``), then act on its exit
code. New rules (0, or 3 = some channels) must pass ``spamassassin --lint`` before anything
else; then optional sa-compile, then spamd is reloaded. A failed run or a lint failure puts the
snapshot back (the empty-directory trap) and never reloads spamd. One event per outcome.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from mailopsd.core.errors import JobError, ProcessError
from mailopsd.core.users import Account
from mailopsd.daemon.runner import JobContext, JobResult

if TYPE_CHECKING:
    from mailopsd.spam.rules_snapshot import RulesSnapshot

ALL_CODES = tuple(range(256))  # sa-update's code is the outcome: never an exception


def run(ctx: JobContext) -> JobResult:
    """One sa-update run; fails on a failed update, lint, sa-compile or reload."""
    from mailopsd.core.process import run as run_cmd
    from mailopsd.spam.rules_snapshot import RulesSnapshot
    from mailopsd.spam.spamassassin import parse_perl_major, parse_version_output, sa_update_argv

    cfg, job = ctx.config, ctx.config.jobs.sa_update
    sa, bins = cfg.spamassassin, cfg.binaries
    owner = Account.lookup(sa.rules_owner, "spamassassin.rules_owner")
    version = run_cmd((bins.spamassassin, "--version"), timeout=60, cancel=ctx.cancel)
    sa_version = parse_version_output(version.stdout)
    rules_dir = os.path.join(sa.update_dir, sa_version)
    compiled_dir = os.path.join(sa.update_dir, "compiled", parse_perl_major(version.stdout),
                                sa_version)
    argv = sa_update_argv(bins.sa_update, updatedir=rules_dir, gpg=job.gpg,
                          gpg_homedir=sa.gpg_homedir, gpg_keys=job.gpg_keys,
                          channels=job.channels, install=job.install)
    if ctx.dry_run:
        from mailopsd.spam.spamassassin import channel_versions

        ctx.log.info("sa_update_dry_run", argv=argv, rules_dir=rules_dir,
                     installed=channel_versions(rules_dir), as_user=owner.name)
        return JobResult(counts={"dry_run": True})
    if job.gpg:
        _import_keys(ctx, owner)
    snap = RulesSnapshot(bins.python3, rules_dir, owner)
    try:
        snap.take()
    except ProcessError as exc:  # then sa-update must not run: nothing to go back to
        raise JobError(f"cannot copy {rules_dir} aside as {owner.name} before the update "
                       f"(is {sa.update_dir} writable by {owner.name}?): {exc}") from exc
    try:
        return _update(ctx, argv, owner, rules_dir, compiled_dir, snap)
    except BaseException:
        # cancelled or timed out halfway: never leave a half-written rules directory behind
        if snap.changed():
            try:
                snap.restore()
                ctx.log.warning("sa_update_rules_restored", rules_dir=rules_dir,
                                reason="the run was interrupted")
            except ProcessError as exc:  # report it, but keep the original error
                ctx.log.error("sa_update_restore_failed", rules_dir=rules_dir,
                              snapshot=snap.path, error=str(exc))
        raise
    finally:
        try:
            snap.discard()
        except ProcessError as exc:
            ctx.log.warning("sa_update_snapshot_left", path=snap.path, error=str(exc))


def _import_keys(ctx: JobContext, owner: Account) -> None:
    """Import each configured key file into sa-update's keyring; raises ProcessError."""
    from mailopsd.core.process import run as run_cmd
    from mailopsd.spam.spamassassin import import_key_argv

    sa, job = ctx.config.spamassassin, ctx.config.jobs.sa_update
    for key_file in job.gpg_key_files:
        try:
            run_cmd(import_key_argv(ctx.config.binaries.sa_update, sa.gpg_homedir, key_file),
                    timeout=120, account=owner, umask=0o022, cancel=ctx.cancel)
        except ProcessError as exc:
            ctx.log.error("sa_update_key_import_failed", key_file=key_file, error=str(exc))
            raise
        ctx.log.info("sa_update_key_imported", key_file=key_file, gpg_homedir=sa.gpg_homedir)


def _update(ctx: JobContext, argv: tuple[str, ...], owner: Account, rules_dir: str,
            compiled_dir: str, snap: RulesSnapshot) -> JobResult:
    """Run sa-update and act on its exit code (see the module docstring)."""
    from mailopsd.core.process import run as run_cmd
    from mailopsd.spam.spamassassin import channel_versions, classify_sa_update, tail

    timeout = float(ctx.settings.timeout)
    res = run_cmd(argv, timeout=timeout, account=owner, umask=0o022, ok_codes=ALL_CODES,
                  cancel=ctx.cancel)
    rc = res.returncode
    outcome, meaning = classify_sa_update(rc)
    counts: dict[str, object] = {"rc": rc, "outcome": outcome}
    detail = tail(res.stderr + "\n" + res.stdout)
    if outcome == "no_updates":
        # sa-update may still refresh files (MIRRORED.BY); keep them only if they lint clean
        lint = _lint(ctx, owner, rules_dir) if snap.changed() else None
        if lint is not None:
            snap.restore()
            ctx.log.error("sa_update_lint_failed", rc=rc, detail=lint, rules_dir=rules_dir)
            ctx.log.warning("sa_update_rules_restored", rules_dir=rules_dir,
                            reason="no updates, yet the directory changed and fails lint")
            return JobResult(ok=False, counts={**counts, "lint": "failed", "restored": True},
                             message="sa-update changed the rules without updating them and "
                                     "they fail lint: previous rules restored")
        ctx.log.info("sa_update_no_updates", channels=channel_versions(rules_dir))
        return JobResult(counts=counts)
    if outcome == "failed":
        restored = snap.changed()
        if restored:
            snap.restore()
            ctx.log.warning("sa_update_rules_restored", rules_dir=rules_dir,
                            reason=f"sa-update exited {rc} and left the directory changed")
        ctx.log.error("sa_update_failed", rc=rc, reason=meaning, detail=detail,
                      restored=restored, channels=channel_versions(rules_dir))
        return JobResult(ok=False, counts={**counts, "restored": restored},
                         message=f"sa-update exited {rc}: {meaning}")
    ctx.check_cancel()
    lint = _lint(ctx, owner, rules_dir)
    if lint is not None:
        snap.restore()
        ctx.log.error("sa_update_lint_failed", rc=rc, detail=lint, rules_dir=rules_dir)
        ctx.log.warning("sa_update_rules_restored", rules_dir=rules_dir,
                        reason="the new rules fail spamassassin --lint",
                        channels=channel_versions(rules_dir))
        return JobResult(ok=False, counts={**counts, "lint": "failed", "restored": True},
                         message="the new rules fail spamassassin --lint: previous rules "
                                 "restored, spamd not reloaded")
    channels = channel_versions(rules_dir)
    problems: list[str] = []
    if outcome == "installed":
        ctx.log.info("sa_update_installed", channels=channels, rules_dir=rules_dir)
    else:
        ctx.log.warning("sa_update_partial", channels=channels, detail=detail)
        problems.append("some channels failed (the others were installed)")
    counts["lint"] = "ok"
    problems += _compile_and_reload(ctx, owner, rules_dir, compiled_dir, counts)
    return JobResult(ok=not problems, counts=counts, message="; ".join(problems))


def _lint(ctx: JobContext, owner: Account, rules_dir: str) -> str | None:
    """Run spamassassin --lint over the rules spamd will load; None if clean, else the output."""
    from mailopsd.core.process import run as run_cmd
    from mailopsd.spam.spamassassin import lint_argv, tail

    sa = ctx.config.spamassassin
    argv = lint_argv(ctx.config.binaries.spamassassin,
                     rules_dir if os.path.isdir(rules_dir) else None, sa.site_config_dir)
    res = run_cmd(argv, timeout=float(ctx.settings.timeout), account=owner, umask=0o022,
                  ok_codes=ALL_CODES, cancel=ctx.cancel)
    if res.returncode == 0:
        return None
    return f"exit {res.returncode}: " + tail(res.stderr + "\n" + res.stdout)


def _compile_and_reload(ctx: JobContext, owner: Account, rules_dir: str, compiled_dir: str,
                        counts: dict[str, object]) -> list[str]:
    """Optional sa-compile, then reload spamd; returns the problems (empty = all good)."""
    from mailopsd.core.process import run as run_cmd
    from mailopsd.spam.rules_snapshot import publish_tree
    from mailopsd.spam.spamassassin import reload_spamd, sa_compile_argv

    cfg, job = ctx.config, ctx.config.jobs.sa_update
    sa = cfg.spamassassin
    problems: list[str] = []
    if job.sa_compile:
        try:
            res = run_cmd(sa_compile_argv(cfg.binaries.sa_compile, rules_dir,
                                          sa.site_config_dir, compiled_dir),
                          timeout=float(job.timeout), account=owner, umask=0o022,
                          cancel=ctx.cancel)
            # like Debian's spamassassin-maint: chmod -R go-w,go+rX the whole compiled/ tree
            publish_tree(cfg.binaries.python3, os.path.join(sa.update_dir, "compiled"), owner)
            ctx.log.info("sa_compile_finished", duration=round(res.duration, 1),
                         compiled_dir=compiled_dir)
            counts["sa_compile"] = "ok"
        except ProcessError as exc:
            # stale compiled rules are safe (Rule2XSBody only uses matching ones): still reload
            ctx.log.error("sa_compile_failed", error=str(exc))
            counts["sa_compile"] = "failed"
            problems.append("sa-compile failed")
    if not job.reload_spamd:
        return problems
    ctx.check_cancel()
    result = reload_spamd(systemctl=cfg.binaries.systemctl, units=sa.spamd_units,
                          pidfile=sa.spamd_pidfile, wait=float(job.reload_wait), timeout=120)
    counts["reload"] = result.method if result.ok else "failed"
    if result.method == "none":
        ctx.log.info("spamd_not_running", detail=result.detail, unit=result.unit)
    elif result.ok:
        ctx.log.info("spamd_reloaded", method=result.method, unit=result.unit, pid=result.pid,
                     new_pid=result.new_pid)
    else:
        ctx.log.error("spamd_reload_failed", method=result.method, unit=result.unit,
                      pid=result.pid, detail=result.detail)
        problems.append(f"spamd reload failed: {result.detail}")
    return problems
