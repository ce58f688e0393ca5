"""The spool is a trust boundary (real users, the real ``mailopsd learn-enqueue`` run as them,
the real daemon and sa-learn): nobody reads, changes or removes another user's entries; planted
links and FIFOs are refused; the user is the entry's owner as the kernel records it; exit codes
and a quiet stderr; events in a real journald with USER=, CLASS=, COUNT=."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from mailopsd.livelearn import spool as names
from mailopsd.livelearn.drain import Spool
from tests.integration.livelearn_scene import LiveScene, live_scene, message
from tests.support.common import wait_until
from tests.support.daemon import MailopsdProcess
from tests.support.journald import private_journald
from tests.support.users import TestUser

pytestmark = pytest.mark.integration

ATTACK = """
import errno, os, sys, json
spool, victim = sys.argv[1], sys.argv[2]
out = {}
def attempt(what, fn):
    try:
        fn()
        out[what] = "done"
    except OSError as exc:
        out[what] = errno.errorcode[exc.errno]
attempt("list", lambda: os.listdir(spool))
attempt("read", lambda: open(os.path.join(spool, victim), "rb").read())
attempt("write", lambda: open(os.path.join(spool, victim), "ab").write(b"x"))
attempt("remove", lambda: os.unlink(os.path.join(spool, victim)))
attempt("rename", lambda: os.rename(os.path.join(spool, victim), os.path.join(spool, "h.1")))
path = os.path.join(spool, victim)
attempt("replace", lambda: os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL))
print(json.dumps(out))
"""


def _enqueue(scene: LiveScene, user: TestUser, klass: str, data: bytes,
             config: Path | None = None):  # type: ignore[no-untyped-def]
    return user.run([scene.exe, "-c", str(config or scene.config), "learn-enqueue", klass],
                    input=data, check=False)


def _entries_of(scene: LiveScene, uid: int) -> list[str]:
    return [n for n in scene.pending() if os.lstat(scene.spool / n).st_uid == uid]


def test_a_user_can_neither_read_change_nor_remove_anothers_entry(mail_root: Path) -> None:
    with live_scene(mail_root, users=2, dovecot=False) as scene:
        alice, mallory = scene.users
        Spool(str(scene.spool)).ensure()
        res = _enqueue(scene, alice, "spam", message(1))
        assert (res.returncode, res.stdout, res.stderr) == (0, b"", b"")
        [entry] = _entries_of(scene, alice.uid)
        assert os.stat(scene.spool / entry).st_mode & 0o777 == 0o600
        tried = json.loads(mallory.python(ATTACK, str(scene.spool), entry))
        assert tried == {"list": "EACCES", "read": "EACCES", "write": "EACCES",
                         "remove": "EPERM", "rename": "EPERM", "replace": "EEXIST"}
        assert (scene.spool / entry).read_bytes() == message(1)


PLANT = """
import os, sys
spool, n = sys.argv[1], int(sys.argv[2])
def name(kind):
    global n
    n += 1
    return os.path.join(spool, f"{kind}.{n}.1.planted")
os.symlink("/etc/shadow", name("spam"))
os.symlink(sys.argv[3], name("ham"))  # alice's entry, as if it were mallory's ham
os.mkfifo(name("spam"), 0o600)
own = name("spam")
with open(own, "wb") as f:
    f.write(b"From: alice\\nX-Submitted-By: alice\\nSubject: mine\\n\\nspam spam\\n")
os.link(own, os.path.join(spool, "copy-of-own"))
print("ok")
"""


def test_planted_links_and_fifos_are_refused_and_the_kernels_owner_is_the_user(
        mail_root: Path) -> None:
    with live_scene(mail_root, users=2, dovecot=False) as scene:
        alice, mallory = scene.users
        Spool(str(scene.spool)).ensure()
        assert _enqueue(scene, alice, "spam", message(1)).returncode == 0
        [entry] = _entries_of(scene, alice.uid)
        mallory.python(PLANT, str(scene.spool), "100", str(scene.spool / entry))
        mallory_entry = message(2, tag="claims-to-be-alice")
        assert _enqueue(scene, mallory, "ham", mallory_entry).returncode == 0
        with MailopsdProcess(scene.config) as daemon:
            daemon.wait_event("live_learn_ready", timeout=60)
            wait_until(lambda: scene.magic() == (1, 1) and not scene.pending(), 90,
                       interval=0.5, what="alice's spam and mallory's ham learned")
            rejected = [e for e in daemon.events() if e["event"] == "live_learn_rejected"]
            learned = [e for e in daemon.events() if e["event"] == "live_learn_learned"]
        assert sorted(e["reason"] for e in rejected) == [
            "hard_link", "hard_link", "not_regular", "not_regular", "not_regular"]
        assert all(e["user"] == mallory.name for e in rejected)
        assert sorted((e["user"], e["class"], e["count"]) for e in learned) == sorted(
            [(alice.name, "spam", 1), (mallory.name, "ham", 1)])
        assert os.listdir(scene.spool) == [names.DAILY_DIR]
        assert Path("/etc/shadow").exists()


def test_learn_enqueue_exit_codes_and_a_quiet_stderr(mail_root: Path) -> None:
    with live_scene(mail_root, dovecot=False) as scene:
        user = scene.users[0]
        res = _enqueue(scene, user, "spam", message(1))
        assert res.returncode == 75 and res.stdout == b""  # no spool yet: cannot persist
        assert b"does not exist" in res.stderr
        Spool(str(scene.spool)).ensure()
        os.chmod(scene.spool, 0o1755)
        res = _enqueue(scene, user, "spam", message(1))
        assert res.returncode == 75 and b"not writable" in res.stderr
        os.chmod(scene.spool, 0o1733)
        big = _enqueue(scene, user, "spam", message(2, size=2_000_000))
        assert (big.returncode, big.stderr) == (0, b"")  # refused by size: counted, exit 0
        assert _enqueue(scene, user, "eggs", message(3)).returncode == 2
        bad = mail_root / "bad.toml"
        bad.write_text("[live-learn]\ndaily_limit = 'many'\n")
        bad.chmod(0o644)
        res = _enqueue(scene, user, "spam", message(4), config=bad)
        assert res.returncode == 2 and b"live-learn.daily_limit" in res.stderr
        assert _entries_of(scene, user.uid) == []
        ok = _enqueue(scene, user, "ham", message(5))
        assert (ok.returncode, ok.stdout, ok.stderr) == (0, b"", b"")
        assert len(_entries_of(scene, user.uid)) == 1


def test_events_reach_journald_with_user_class_and_count(mail_root: Path) -> None:
    with private_journald() as journald, live_scene(
            mail_root, dovecot=False,
            logging={"target": "journald", "journal_socket": journald.socket_path,
                     "syslog_identifier": "mailopsd-live-test"}) as scene:
        user = scene.users[0]
        Spool(str(scene.spool)).ensure()
        for n in range(3):
            assert _enqueue(scene, user, "spam", message(n)).returncode == 0
        with MailopsdProcess(scene.config):
            [row] = journald.query("SYSLOG_IDENTIFIER=mailopsd-live-test",
                                   "EVENT=live_learn_learned", timeout=90)
        assert (row["USER"], row["CLASS"], row["COUNT"]) == (user.name, "spam", "3")
        assert row["UID"] == str(user.uid)
        # learn-enqueue's own events (run as root here: a user cannot reach the test journald
        # through /proc/<pid>/root; the system journal's socket is open to every user)
        from tests.support.daemon import run_cli

        res = run_cli(scene.config, "learn-enqueue", "ham", input=message(9))
        assert (res.returncode, res.stderr) == (0, "")
        [queued] = journald.query("SYSLOG_IDENTIFIER=mailopsd-live-test",
                                  "EVENT=learn_enqueued")
        assert (queued["USER"], queued["CLASS"]) == ("root", "ham")


def test_the_spool_is_made_reachable_under_the_units_umask(mail_root: Path) -> None:
    with live_scene(mail_root, dovecot=False) as scene:
        user = scene.users[0]
        old = os.umask(0o077)  # the systemd unit's UMask
        try:
            spool = Spool(str(scene.spool))
            spool.ensure()
            spool.publish_daily(user.uid, names.today(), 5)
            spool.close()
        finally:
            os.umask(old)
        modes = {p: os.stat(p).st_mode & 0o7777 for p in (
            scene.spool.parent, scene.spool, scene.spool / names.DAILY_DIR,
            Path(names.daily_path(str(scene.spool), user.uid)))}
        assert list(modes.values()) == [0o755, 0o1733, 0o755, 0o644]
        count = user.python("import sys\nprint(open(sys.argv[1]).read().split()[1])",
                            names.daily_path(str(scene.spool), user.uid))
        assert count.strip() == b"5"


FAILING_SA_LEARN = """#!/bin/sh
# sa-learn that fails (as a locked or broken database does) while FLAG exists
if [ -e @FLAG@ ]; then echo "bayes: cannot open bayes databases" >&2; exit 25; fi
exec /usr/bin/sa-learn "$@"
"""


def test_sa_learn_failures_keep_the_entries_and_retry_with_backoff(mail_root: Path) -> None:
    flag = mail_root / "fail"
    wrapper = mail_root / "failing-sa-learn"
    wrapper.write_text(FAILING_SA_LEARN.replace("@FLAG@", str(flag)))
    wrapper.chmod(0o755)
    flag.touch()
    with live_scene(mail_root, dovecot=False, sa_learn=str(wrapper)) as scene:
        user = scene.users[0]
        Spool(str(scene.spool)).ensure()
        for n in range(2):
            assert _enqueue(scene, user, "spam", message(n)).returncode == 0
        with MailopsdProcess(scene.config) as daemon:
            daemon.wait_event("live_learn_failed", timeout=60, kept=2)
            first = daemon.wait_event("live_learn_retry", failures=1)
            assert first["retry_in"] == 5.0
            daemon.wait_event("live_learn_retry", timeout=30, failures=2, retry_in=10.0)
            assert len(scene.pending()) == 2 and scene.magic() == (0, 0)

            def snapshot() -> dict | None:  # type: ignore[type-arg]
                try:
                    snap = json.loads((mail_root / "run" / "status.json").read_text())
                except (OSError, ValueError):
                    return None
                live = snap.get("services", {}).get("live-learn", {})
                return live if live.get("failures", 0) >= 2 else None

            live = wait_until(snapshot, 30, interval=0.5, what="status snapshot")
            assert (live["pending"], live["alive"]) == (2, True)
            flag.unlink()
            daemon.wait_event("live_learn_learned", timeout=60, user=user.name, count=2)
            wait_until(lambda: not scene.pending(), 10, what="entries removed")
        assert scene.magic() == (2, 0)


UNREADABLE_SA_LEARN = """#!/usr/bin/python3
# sa-learn that does not examine a message containing POISON (as if it could not parse it)
import os, subprocess, sys, tempfile
args = sys.argv[1:]
i = args.index("-f")
keep = [ln for ln in open(args[i + 1])
        if b"POISON" not in open(ln.split(":file:", 1)[1].rstrip("\\n"), "rb").read()]
if not keep:
    print("Learned tokens from 0 message(s) (0 message(s) examined)")
    sys.exit(1)
fd, tmp = tempfile.mkstemp()
os.write(fd, "".join(keep).encode())
os.close(fd)
args[i + 1] = tmp
res = subprocess.run(["/usr/bin/sa-learn", *args])
os.unlink(tmp)
sys.exit(res.returncode)
"""


def test_a_message_sa_learn_will_not_examine_holds_back_nothing_else(mail_root: Path) -> None:
    wrapper = mail_root / "picky-sa-learn"
    wrapper.write_text(UNREADABLE_SA_LEARN)
    wrapper.chmod(0o755)
    with live_scene(mail_root, dovecot=False, sa_learn=str(wrapper),
                    live_learn={"batch_wait": "3s"}) as scene:
        user = scene.users[0]
        Spool(str(scene.spool)).ensure()
        assert _enqueue(scene, user, "spam", message(99, tag="POISON")).returncode == 0
        with MailopsdProcess(scene.config) as daemon:
            # alone, nothing else learned: not the message's fault for all we know; kept
            daemon.wait_event("live_learn_failed", timeout=60, kept=1)
            assert len(scene.pending()) == 1
            for n in range(5):
                assert _enqueue(scene, user, "spam", message(n)).returncode == 0
            daemon.wait_event("live_learn_split", timeout=90)
            daemon.wait_event("live_learn_refused", timeout=90, reason="not_learnable",
                              count=1, user=user.name)
            wait_until(lambda: not scene.pending(), 60, what="spool empty")
            learned = [e for e in daemon.events() if e["event"] == "live_learn_learned"]
            assert sum(e["count"] for e in learned) == 5
        assert scene.magic() == (5, 0)
