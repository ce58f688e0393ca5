"""learn-spam: train spamd's Bayes database from users' Spam / Not Spam folders (was learn-spam.pl).

One run:
1. Mailboxes are read afresh from passwd (``[mailboxes]``).
2. Per user, an as-user worker (``mailopsd.core.asuser``, ``maildir.collect``) snapshots the
   spam and ham folders (no symlink followed; only regular files the user owns; T-flagged and
   oversized messages are left in place and counted; a symlinked or foreign folder is skipped with a
   warning) and streams each message's content to root, which writes it into a private staging
   directory (``mailopsd.spam.staging``) that sa-learn, as the database owner, can read.
3. Under the shared Bayes lock, ONE sa-learn per class reads a ``-f`` list of the copies, as the
   database owner with its HOME (plus ``--dbpath`` when ``bayes_path`` is set). Success is rc 0
   with every listed message examined; anything else keeps every message of that class (ham is
   not tried after a spam failure) and fails the job.
4. Only then, per user and as the user (``maildir.apply``), exactly the snapshotted inodes are
   acted on: spam deleted or moved to the trash folder (read); ham moved back to the INBOX
   marked read (just unlinked when a hard-link copy is already there). Later arrivals stay.
5. The staging directory is removed; one ``learn_spam_summary`` event reports the run.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, cast

from mailopsd.daemon.runner import JobContext, JobResult

if TYPE_CHECKING:
    from mailopsd.core.config.schema_spam import LearnSpamJob

CLASSES: tuple[Literal["spam", "ham"], ...] = ("spam", "ham")
STAGING_PREFIX = "mailopsd-learn-spam."
SUSPICIOUS = ("symlink", "not_regular", "foreign_owner")


@dataclass
class UserRun:
    """One mailbox's part of a run."""

    box: Any  # mailopsd.core.users.Mailbox
    staged: dict[str, list[tuple[str, dict[str, Any], str]]] = field(
        default_factory=lambda: {k: [] for k in CLASSES})  # class -> [(folder, ref, staged name)]
    skipped: Counter[str] = field(default_factory=Counter)
    done: Counter[str] = field(default_factory=Counter)
    error: str = ""

    def report(self) -> dict[str, Any]:
        """This user's entry in the summary event."""
        out: dict[str, Any] = {k: len(self.staged[k]) for k in CLASSES}
        if self.skipped:
            out["skipped"] = dict(self.skipped)
        out.update(self.done)
        if self.error:
            out["error"] = self.error
        return out


class _Sink:
    """Receives one user's streamed messages: staged copies (or, in a dry run, just counts)."""

    def __init__(self, user: UserRun, staging: Any) -> None:
        self.user, self.staging = user, staging
        self.current: tuple[str, dict[str, Any], str, int] | None = None

    def begin(self, meta: dict[str, Any]) -> None:
        from mailopsd.core.asuser import AsUserError
        from mailopsd.maildir.folder import MessageRef

        klass = meta.get("class")
        if klass not in CLASSES:
            raise AsUserError(f"worker sent an item of class {klass!r}")
        ref = MessageRef.from_json(meta["ref"]).to_json()
        name, fd = self.staging.create() if self.staging else ("", -1)
        self.current = (str(klass), {"folder": str(meta["folder"]), "ref": ref}, name, fd)

    def data(self, chunk: bytes) -> None:
        if self.current is None or self.current[3] < 0:
            return
        self.staging.write(self.current[3], chunk)

    def end(self, ok: bool, info: dict[str, Any]) -> None:
        assert self.current is not None
        klass, item, name, fd = self.current
        self.current = None
        if fd >= 0:
            os.close(fd)
        if ok:
            self.user.staged[klass].append((item["folder"], item["ref"], name))
        elif name:
            self.staging.unlink(name)

    def discard(self) -> None:
        """Forget everything of this user (the worker failed): its messages all stay."""
        if self.current is not None:
            _, _, name, fd = self.current
            if fd >= 0:
                os.close(fd)
            if name:
                self.staging.unlink(name)
            self.current = None
        for items in self.user.staged.values():
            for _, _, name in items:
                if name:
                    self.staging.unlink(name)
            items.clear()


def _settings(ctx: JobContext) -> LearnSpamJob:
    return cast("LearnSpamJob", ctx.settings)


def run(ctx: JobContext) -> JobResult:
    """Learn every user's spam and ham folders; see the module docstring."""
    from mailopsd.core.errors import JobCancelled, JobError
    from mailopsd.core.users import find_mailboxes
    from mailopsd.spam.bayes_db import BayesDB
    from mailopsd.spam.staging import Staging, remove_leftovers

    started = time.monotonic()
    job, mb = _settings(ctx), ctx.config.mailboxes
    db = BayesDB.from_config(ctx.config)
    if db.owner.uid == 0:
        raise JobError("spamassassin.bayes_owner must not be root: spamd would lose Bayes")
    boxes, problems = find_mailboxes(mb.users, mb.min_uid, mb.max_uid, mb.exclude, mb.maildir)
    for name, problem in problems:
        ctx.log.warning("learn_spam_mailbox_skipped", user=name, reason=problem)
    users = [UserRun(box) for box in boxes]
    learned: dict[str, dict[str, int]] = {}
    errors: list[str] = []
    staging = None
    cancelled = False
    try:
        if not ctx.dry_run:
            for path in remove_leftovers(job.staging_dir, STAGING_PREFIX):
                ctx.log.warning("learn_spam_leftover_removed", path=path)
            try:
                staging = Staging(job.staging_dir, STAGING_PREFIX, db.owner)
            except OSError as exc:
                raise JobError(f"cannot create a staging directory in {job.staging_dir} "
                               f"(jobs.learn-spam.staging_dir): {exc}") from exc
            blocked = staging.unreachable_by(db.owner)
            if blocked:
                raise JobError(f"{db.owner.name} cannot reach {blocked}: set "
                               "jobs.learn-spam.staging_dir to a directory bayes_owner can "
                               "traverse")
        _each_user(ctx, users, _collect, staging)
        if staging is not None:
            ok_classes = _learn(ctx, db, users, staging, learned, errors)
            _each_user(ctx, users, _commit, ok_classes)
    except JobCancelled:
        cancelled = True
        raise
    finally:
        if staging is not None:
            staging.remove()
        errors += [f"{u.box.account.name}: {u.error}" for u in users if u.error]
        counts = _summary(ctx, users, learned, errors, time.monotonic() - started, cancelled)
    return JobResult(ok=not errors, counts=counts, message="; ".join(errors)[:500])


def _each_user(ctx: JobContext, users: list[UserRun], step: Any, arg: Any) -> None:
    """Run ``step(ctx, user, arg)`` for every user, ``workers`` at a time (each step is mostly
    an as-user process starting and doing I/O); raises JobCancelled once all have stopped."""
    import contextvars
    from concurrent.futures import ThreadPoolExecutor

    def one(user: UserRun) -> None:
        ctx.check_cancel()
        step(ctx, user, arg)

    with ThreadPoolExecutor(max_workers=max(1, _settings(ctx).workers)) as pool:
        # each task gets a copy of this thread's context: events keep JOB=learn-spam
        futures = [pool.submit(contextvars.copy_context().run, one, u) for u in users]
    for future in futures:
        future.result()


def _collect(ctx: JobContext, user: UserRun, staging: Any) -> None:
    """Snapshot (and stage the content of) one user's spam and ham folders."""
    from mailopsd.core.asuser import AsUserError, run_as

    job, acct = _settings(ctx), user.box.account
    args = {"home": acct.home, "maildir": user.box.maildir, "max_size": job.max_size,
            "export": staging is not None,
            "classes": {"spam": list(job.spam_folders), "ham": list(job.ham_folders)}}
    sink = _Sink(user, staging)
    try:
        res = run_as(acct, "maildir.collect", args, timeout=job.timeout, cancel=ctx.cancel,
                     sink=sink)
    except BaseException as exc:
        sink.discard()
        if not isinstance(exc, AsUserError | OSError):
            raise
        user.error = f"snapshot failed: {exc}"
        ctx.log.error("learn_spam_user_failed", user=acct.name, step="snapshot", error=str(exc))
        return
    if res.get("maildir") != "ok":
        ctx.log.warning("learn_spam_mailbox_skipped", user=acct.name,
                        reason=f"Maildir {res.get('maildir')}: {res.get('reason', '')}".strip())
        return
    for folder, status in res["folders"].items():
        if status.startswith("unsafe"):
            ctx.log.warning("learn_spam_folder_skipped", user=acct.name, folder=folder,
                            reason=status)
    user.skipped.update(res["skipped"])
    bad = {k: v for k, v in user.skipped.items() if k in SUSPICIOUS}
    if bad:
        ctx.log.warning("learn_spam_messages_refused", user=acct.name, **bad)


def _learn(ctx: JobContext, db: Any, users: list[UserRun], staging: Any,
           learned: dict[str, dict[str, int]], errors: list[str]) -> list[str]:
    """One sa-learn per class over every user's staged copies; returns the classes learned."""
    from mailopsd.core.errors import JobCancelled, MailopsError, ProcessError
    from mailopsd.core.process import run
    from mailopsd.spam.bayes import Learned, learn_outcome, list_file_text, sa_learn_argv
    from mailopsd.spam.bayes_db import hold_bayes_lock

    job, sa = _settings(ctx), ctx.config.spamassassin
    ok_classes: list[str] = []
    try:
        with hold_bayes_lock(ctx.config.daemon.run_dir, sa.bayes_lock_wait, ctx.cancel):
            for klass in CLASSES:
                paths = [staging.abspath(n) for u in users for _, _, n in u.staged[klass]]
                if not paths:
                    continue  # sa-learn would say rc 1: nothing to learn is no failure
                ctx.check_cancel()
                listfile = staging.write_file(f"{klass}.list.", list_file_text(klass, paths)
                                              .encode("utf-8", "surrogateescape"))
                argv = sa_learn_argv(ctx.config.binaries.sa_learn, dbpath=db.dbpath or None,
                                     listfile=listfile, klass=klass)
                try:
                    res = run(argv, timeout=job.timeout, account=db.owner, ok_codes=(0, 1),
                              cancel=ctx.cancel)
                    ok, got, why = learn_outcome(res.returncode, res.stdout, len(paths))
                except ProcessError as exc:
                    ok, got, why = False, Learned(0, 0), str(exc)
                learned[klass] = {"listed": len(paths), "learned": got.learned,
                                  "examined": got.examined}
                if not ok:
                    ctx.log.error("learn_spam_learn_failed", klass=klass, error=why,
                                  kept=len(paths))
                    errors.append(f"{klass}: {why}; every message kept")
                    break
                ok_classes.append(klass)
    except JobCancelled:
        raise
    except MailopsError as exc:  # the Bayes lock stayed busy, or staging the list failed
        ctx.log.error("learn_spam_learn_failed", error=str(exc))
        errors.append(f"{exc}; every message kept")
    return ok_classes


def _commit(ctx: JobContext, user: UserRun, ok_classes: list[str]) -> None:
    """As the user, remove the learned spam and move the learned ham back to the INBOX."""
    from mailopsd.core.asuser import AsUserError, run_as

    job, acct = _settings(ctx), user.box.account
    actions: list[dict[str, Any]] = []
    for klass in ok_classes:
        for folder, ref, _ in user.staged[klass]:
            act: dict[str, Any] = {"folder": folder, "ref": ref, "tag": klass}
            if klass == "ham":
                act.update(kind="move", dest="", add_flags="S", dedupe=True)
            elif job.spam_action == "trash":
                act.update(kind="move", dest=job.trash_folder, add_flags="S", create_dest=True)
            else:
                act.update(kind="delete")
            actions.append(act)
    if not actions:
        return
    try:
        res = run_as(acct, "maildir.apply", {"home": acct.home, "maildir": user.box.maildir,
                                             "actions": actions},
                     timeout=ctx.settings.timeout, cancel=ctx.cancel)
    except AsUserError as exc:
        user.error = f"clean-up failed (messages kept): {exc}"
        ctx.log.error("learn_spam_user_failed", user=acct.name, step="clean-up", error=str(exc))
        return
    user.done.update(res.get("counts", {}))
    if res.get("maildir") != "ok" or res.get("errors"):
        user.error = f"clean-up incomplete: {res.get('errors') or res.get('maildir')}"
        ctx.log.error("learn_spam_user_failed", user=acct.name, step="clean-up",
                      error=user.error)


def _summary(ctx: JobContext, users: list[UserRun], learned: dict[str, dict[str, int]],
             errors: list[str], duration: float, cancelled: bool) -> dict[str, Any]:
    """Log the one summary event; return the flat counts for the job history."""
    skipped: Counter[str] = Counter()
    done: Counter[str] = Counter()
    for u in users:
        skipped.update(u.skipped)
        done.update(u.done)
    spam = sum(len(u.staged["spam"]) for u in users)
    ham = sum(len(u.staged["ham"]) for u in users)
    counts = {"users": len(users), "spam": spam, "ham": ham,
              "learned_spam": learned.get("spam", {}).get("learned", 0),
              "learned_ham": learned.get("ham", {}).get("learned", 0),
              "skipped": sum(skipped.values()),
              "spam_removed": done["spam_deleted"] + done["spam_moved"],
              "ham_restored": done["ham_moved"] + done["ham_deduped"],
              "errors": len(errors)}
    per_user = {u.box.account.name: u.report() for u in users
                if any(u.staged.values()) or u.skipped or u.error}
    emit = ctx.log.error if errors else ctx.log.info
    emit("learn_spam_summary", **counts, per_user=per_user, skipped_by_reason=dict(skipped),
         sa_learn=learned, dry_run=ctx.dry_run, cancelled=cancelled, duration=round(duration, 3))
    # per user in the history too: `mailopsd jobs --history learn-spam` shows who learned what
    return {**counts, "per_user": per_user}
