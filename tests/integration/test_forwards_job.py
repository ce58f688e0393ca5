"""make-forwards against real users, the real `exim -bf` and a real private Exim (root needed)."""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from mailopsd.core.config import parse_config
from mailopsd.core.state import StateDB
from mailopsd.daemon.runner import RunOutcome, run_job
from mailopsd.forward.forwards import DEFAULT_TEMPLATE, SAMPLE_HAM, SAMPLE_SPAM
from tests.support.exim import EXIM, PrivateExim
from tests.support.users import TestUser

pytestmark = pytest.mark.integration


@contextlib.contextmanager
def users(root: Path, count: int) -> Iterator[list[TestUser]]:
    """``count`` real users (Maildir with .Trash), all deleted afterwards."""
    with contextlib.ExitStack() as stack:
        yield [stack.enter_context(TestUser(root)) for _ in range(count)]


def make_forwards(root: Path, names: list[str], dry_run: bool = False,
                  **job: Any) -> tuple[RunOutcome, list[dict[str, Any]]]:
    """Run the job as the daemon would, for exactly ``names``; returns outcome and events."""
    cfg = parse_config({
        "daemon": {"state_dir": str(root / "state"), "run_dir": str(root / "run")},
        "mailboxes": {"users": names},
        "jobs": {"make-forwards": job},
    })
    with capture_logs() as events:
        outcome = run_job("make-forwards", cfg, StateDB(cfg.daemon.state_dir), dry_run=dry_run)
    return outcome, events


def snapshot(path: Path) -> tuple[int, int, int, bytes | str]:
    """What must not change: inode, mode, mtime, and the content (or a link's target)."""
    st = os.lstat(path)
    body: bytes | str = (os.readlink(path) if stat.S_ISLNK(st.st_mode) else
                         "(dir)" if stat.S_ISDIR(st.st_mode) else path.read_bytes())
    return st.st_ino, st.st_mode, st.st_mtime_ns, body


def test_writes_only_missing_forwards_and_never_follows_symlinks(mail_root: Path) -> None:
    victim = mail_root / "root-owned-victim"
    victim.write_text("root's file\n")
    with users(mail_root, 4) as (fresh, existing, dangling, linked):
        existing.python("import os; open(os.path.expanduser('~/.forward'), 'w')"
                        ".write('someone@example.org\\n')")
        # a dangling link into the user's own home: following it would CREATE ~/through-link
        dangling.run(["ln", "-s", str(dangling.home / "through-link"),
                      str(dangling.home / ".forward")])
        linked.run(["ln", "-s", str(victim), str(linked.home / ".forward")])
        before = {u.name: snapshot(u.home / ".forward") for u in (existing, dangling, linked)}
        names = [fresh.name, existing.name, dangling.name, linked.name]

        outcome, events = make_forwards(mail_root, names, dry_run=True)
        assert outcome.result == "ok", outcome.error
        assert outcome.counts["would_write"] == 1 and outcome.counts["written"] == 0
        assert not os.path.lexists(fresh.home / ".forward")

        outcome, events = make_forwards(mail_root, names)
        assert outcome.result == "ok", outcome.error
        assert {k: outcome.counts[k] for k in ("written", "existing", "symlink", "failed")} == \
            {"written": 1, "existing": 1, "symlink": 2, "failed": 0}
        written = fresh.home / ".forward"
        st = os.lstat(written)
        assert stat.S_ISREG(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o644
        assert (st.st_uid, st.st_gid) == (fresh.uid, fresh.gid)
        assert written.read_text() == DEFAULT_TEMPLATE
        assert [p.name for p in fresh.home.iterdir() if p.name.startswith(".forward")] == \
            [".forward"]  # no temporary file left behind
        for u in (existing, dangling, linked):
            assert snapshot(u.home / ".forward") == before[u.name]
        assert not os.path.lexists(dangling.home / "through-link")
        assert victim.read_text() == "root's file\n"
        summary = [e for e in events if e["event"] == "make_forwards_summary"]
        assert len(summary) == 1 and summary[0]["written_users"] == [fresh.name]
        assert sorted(summary[0]["symlink_users"]) == sorted([dangling.name, linked.name])

        # the real exim, as the user, reads it as a filter sending spam to the user's .Trash
        spam = fresh.run([EXIM, "-bf", str(written)], input=SAMPLE_SPAM).stdout.decode()
        assert f"Save message to: {fresh.home}/Maildir/.Trash/" in spam
        ham = fresh.run([EXIM, "-bf", str(written)], input=SAMPLE_HAM).stdout.decode()
        assert "Normal delivery will occur" in ham

        outcome, _ = make_forwards(mail_root, names)  # a second run changes nothing
        assert (outcome.counts["written"], outcome.counts["existing"]) == (0, 2)
        assert snapshot(written)[2] == st.st_mtime_ns


def test_template_exim_rejects_fails_the_job_before_writing(mail_root: Path) -> None:
    broken = mail_root / "broken.template"
    broken.write_text('# Exim filter\nif $h_X-Spam-Status: contains then\n  save $home/x/\n')
    not_a_filter = mail_root / "plain.template"
    not_a_filter.write_text("postmaster@example.org\n")
    with users(mail_root, 2) as (u1, u2):
        outcome, events = make_forwards(mail_root, [u1.name, u2.name], template=str(broken))
        assert outcome.result == "failed"
        assert "Filter error" in (outcome.error or "") and "nothing written" in outcome.error
        assert any(e["event"] == "forward_template_rejected" for e in events)
        outcome, _ = make_forwards(mail_root, [u1.name, u2.name], template=str(not_a_filter))
        assert outcome.result == "failed" and "# Exim filter" in (outcome.error or "")
        for u in (u1, u2):
            assert not os.path.lexists(u.home / ".forward")


def test_written_filter_sends_spam_to_trash_in_a_real_exim(mail_root: Path) -> None:
    with TestUser(mail_root) as user, PrivateExim(mail_root, userforward=True) as exim:
        outcome, _ = make_forwards(mail_root, [user.name])
        assert outcome.counts["written"] == 1, outcome.error
        for sample in (SAMPLE_SPAM, SAMPLE_HAM):
            res = exim.exim("-odi", "-f", "sender@example.net", user.address, input=sample)
            assert res.returncode == 0, res.stderr
        exim.wait_for_log(rf"=> {user.maildir}/\.Trash/ .*R=userforward T=address_directory")
        exim.wait_for_log(rf"=> {user.name} <{user.address}> R=local_user T=maildir_home")
        [trashed] = list((user.maildir / ".Trash" / "new").iterdir())
        [inbox] = list((user.maildir / "new").iterdir())
        assert b"X-Spam-Status: Yes" in trashed.read_bytes()
        assert b"X-Spam-Status: No" in inbox.read_bytes()
        assert trashed.stat().st_uid == user.uid


def test_writer_itself_never_replaces_what_appeared_after_the_check(mail_root: Path) -> None:
    """The race window: a .forward created between forward_state() and the write survives."""
    from mailopsd.forward.forwards import ForwardExistsError, write_forward

    with users(mail_root, 3) as (plain, link, directory):
        plain.python("import os; open(os.path.expanduser('~/.forward'), 'w').write('mine\\n')")
        link.run(["ln", "-s", str(link.home / "created-through-link"),
                  str(link.home / ".forward")])
        directory.run(["mkdir", str(directory.home / ".forward")])
        for u in (plain, link, directory):
            before = snapshot(u.home / ".forward")
            with pytest.raises(ForwardExistsError):
                write_forward(u.account, DEFAULT_TEMPLATE, timeout=30)
            assert snapshot(u.home / ".forward") == before
            assert sorted(p.name for p in u.home.iterdir() if p.name.startswith(".forward")) \
                == [".forward"]  # the temporary file is gone
        assert not os.path.lexists(link.home / "created-through-link")
        assert list((directory.home / ".forward").iterdir()) == []


@pytest.mark.parametrize("fault", ["killed", "hanging"])
def test_exim_killed_or_hanging_refuses_the_run_and_writes_nothing(mail_root: Path,
                                                                   fault: str) -> None:
    """The real ``exim -bf`` SIGKILLed, or stopped past command_timeout, while it checks the
    template: one clear event, a failed job, no .forward written (a file written on an
    unchecked template could lose mail)."""
    import signal
    import threading
    import time

    import psutil

    hit: list[int] = []
    stop = threading.Event()

    def watch() -> None:
        me = psutil.Process()
        while not stop.is_set() and not hit:
            for p in me.children(recursive=True):
                try:
                    cmd = p.cmdline()
                except psutil.Error:
                    continue
                if "-bf" in cmd:
                    os.kill(p.pid, signal.SIGKILL if fault == "killed" else signal.SIGSTOP)
                    hit.append(p.pid)
                    return
            time.sleep(0.001)

    with users(mail_root, 1) as (user,):
        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        t0 = time.monotonic()
        outcome, events = make_forwards(mail_root, [user.name], command_timeout="3s")
        stop.set()
        assert hit, "exim -bf was never seen"
        assert outcome.result == "failed", outcome
        assert [e["event"] for e in events].count("forward_template_rejected") == 1
        assert time.monotonic() - t0 < 3 + 15
        assert not (user.home / ".forward").exists()
        assert not psutil.pid_exists(hit[0]) or \
            psutil.Process(hit[0]).status() == psutil.STATUS_ZOMBIE
