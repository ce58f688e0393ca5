"""Shared scene for the live-learn integration tests: real Dovecot with the shipped IMAPSieve
pieces, real mailbox users, a Bayes owner with its own database, the real ``mailopsd run``.

The shipped etc/dovecot/ files are copied into the test root with only their install paths
replaced (``/usr/share/mailopsd/dovecot`` -> the copy, ``/usr/bin/mailopsd`` -> this venv's
``mailopsd -c <config>``), and the sieve scripts compiled with ``sievec`` as the package does.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mailopsd.core.process import run
from tests.support.daemon import MAILOPSD, MailopsdProcess, run_cli, write_config
from tests.support.dovecot import PrivateDovecot
from tests.support.runnable import mailopsd_for
from tests.support.users import TestUser, deliver

REPO = Path(__file__).resolve().parents[2]
SHARE = "/usr/share/mailopsd/dovecot"


def message(n: int, kind: str = "spam", size: int = 0, tag: str = "") -> bytes:
    """A small distinct message (CRLF, as IMAP clients write); ``size`` pads the body."""
    words = ("cheap pills lottery winner casino" if kind == "spam"
             else "meeting agenda budget review notes")
    text = (f"From: {kind}{n}@example.org\r\nTo: u@example.test\r\n"
            f"Subject: {kind} number {n} {tag}\r\nMessage-ID: <{kind}{n}.{tag}.{os.getpid()}@t>"
            f"\r\n\r\n{words} {n} {kind}word{n} {tag}\r\n")
    return (text + "x" * max(0, size - len(text))).encode()


@dataclass
class LiveScene:
    root: Path
    users: list[TestUser]
    owner: TestUser
    dbdir: Path
    config: Path
    exe: str = MAILOPSD  # a mailopsd the users can execute (see tests.support.runnable)
    dovecot: PrivateDovecot | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def spool(self) -> Path:
        return self.root / "spool" / "learn"

    def daemon(self) -> MailopsdProcess:
        """A running ``mailopsd run`` (the caller stops it); waits for live_learn_ready."""
        proc = MailopsdProcess(self.config)
        proc.wait_event("live_learn_ready", timeout=60)
        return proc

    def magic(self) -> tuple[int, int]:
        """(nspam, nham) of the test database ((0, 0) before it exists)."""
        res = run(["/usr/bin/sa-learn", "--dbpath", str(self.dbdir / "bayes"), "--dump",
                   "magic"], timeout=120, account=self.owner.account, ok_codes=(0, 2))
        values = {line.split()[-1]: int(line.split()[2]) for line in res.stdout.splitlines()
                  if "non-token data: n" in line}
        return values.get("nspam", 0), values.get("nham", 0)

    def queue(self) -> dict[str, Any]:
        """``mailopsd learn-queue --json``."""
        import json

        res = run_cli(self.config, "learn-queue", "--json")
        assert res.returncode == 0, res.stderr
        data: dict[str, Any] = json.loads(res.stdout)
        return data

    def pending(self) -> list[str]:
        """Names of the learn entries in the spool."""
        if not self.spool.exists():
            return []
        return sorted(p.name for p in self.spool.iterdir() if p.name.split(".")[0]
                      in ("spam", "ham"))

    def fill_inbox(self, user: TestUser, count: int, kind: str = "spam", tag: str = "",
                   size: int = 0) -> None:
        for n in range(count):
            deliver(user, "", message(n, kind, size=size, tag=tag or user.name))


def _install_dovecot_pieces(root: Path, config: Path, exe: str) -> str:
    """Copy etc/dovecot into ``root/share``, point it at ``exe`` and config; the conf text."""
    share = root / "share"
    shutil.copytree(REPO / "etc" / "dovecot", share)
    pipe = share / "sieve-pipe" / "mailopsd-learn"
    text = pipe.read_text()
    assert "exec /usr/bin/mailopsd learn-enqueue" in text
    pipe.write_text(text.replace("/usr/bin/mailopsd", f"{exe} -c {config}"))
    for path in [share, *share.rglob("*")]:
        os.chmod(path, 0o755 if path.is_dir() or path.parent.name == "sieve-pipe" else 0o644)
    conf = (share / "95-mailopsd-live-learn.conf").read_text().replace(SHARE, str(share))
    return conf


def compile_sieve(dovecot: PrivateDovecot, root: Path) -> None:
    """sievec the two scripts with this Dovecot's config (as the package's postinst does)."""
    for script in sorted((root / "share" / "sieve").glob("*.sieve")):
        res = subprocess.run(["sievec", "-c", str(dovecot.config_path), str(script)],
                             capture_output=True, text=True, timeout=60, check=False)
        assert res.returncode == 0, res.stdout + res.stderr


@contextlib.contextmanager
def live_scene(root: Path, *, users: int = 1, dovecot: bool = True,
               **live: Any) -> Iterator[LiveScene]:
    """Users, a Bayes owner, a config with live-learn on (``live`` keys override), Dovecot."""
    with contextlib.ExitStack() as stack:
        owner = stack.enter_context(TestUser(root, prefix="llo", maildir=False))
        people = [stack.enter_context(TestUser(root, prefix="llu")) for _ in range(users)]
        dbdir = root / "db"
        dbdir.mkdir()
        os.chown(dbdir, owner.uid, owner.gid)
        settings = {"enabled": True, "spool_dir": str(root / "spool" / "learn"),
                    "batch_wait": "1s", **live.pop("live_learn", {})}
        config = write_config(
            root, **{"live-learn": settings},
            spamassassin={"bayes_owner": owner.name, "bayes_path": str(dbdir / "bayes")},
            binaries={"sa_learn": live.pop("sa_learn", "/usr/bin/sa-learn")},
            mailboxes={"users": [u.name for u in people]},
            jobs={"learn-spam": {"staging_dir": str(root), "enabled": False},
                  "bayes-backup": {"enabled": False}, "bayes-stats": {"enabled": False},
                  "sa-update": {"enabled": False}, "make-forwards": {"enabled": False},
                  "housekeeping": {"enabled": False}},
            **live)
        os.chmod(config, 0o644)
        scene = LiveScene(root, people, owner, dbdir, config,
                          exe=mailopsd_for(people[0], root) if people else MAILOPSD)
        if dovecot:
            conf = _install_dovecot_pieces(root, config, scene.exe)
            scene.dovecot = stack.enter_context(PrivateDovecot(root, extra_conf=conf))
            compile_sieve(scene.dovecot, root)
        yield scene
