"""Shared scene for the learn-spam integration tests (test_learn_spam_*.py).

A mailbox user with a Maildir, a second test user owning the Bayes database (standing in for
Debian-exim), a config pointing at both, and run_job with its events captured as JSON.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mailopsd.core import logs
from mailopsd.core.config import parse_config
from mailopsd.core.process import run
from mailopsd.core.state import StateDB
from mailopsd.daemon.runner import RunOutcome, run_job
from tests.support.users import TestUser


def msg(kind: str, n: int, size: int = 0) -> bytes:
    """A small distinct message; ``size`` pads the body."""
    words = ("cheap pills lottery winner casino" if kind == "spam"
             else "meeting agenda budget review notes")
    text = (f"From: {kind}{n}@example.org\nTo: u@example.test\nSubject: {kind} number {n}\n"
            f"Message-ID: <{kind}{n}.{os.getpid()}@t>\n\n{words} {n} {kind}word{n}\n")
    return (text + "x" * max(0, size - len(text))).encode()


@dataclass
class Scene:
    root: Path
    user: TestUser
    owner: TestUser
    dbdir: Path
    events: io.StringIO

    def config(self, *, users: list[str] | None = None, bayes_path: bool = True,
               sa_learn: str = "/usr/bin/sa-learn", **job: Any) -> dict[str, Any]:
        """The config dict (``job`` keys go to [jobs.learn-spam])."""
        return {"daemon": {"state_dir": str(self.root / "state"),
                           "run_dir": str(self.root / "run")},
                "logging": {"target": "json", "level": "debug"},
                "binaries": {"sa_learn": sa_learn},
                "mailboxes": {"users": users or [self.user.name]},
                "spamassassin": {"bayes_owner": self.owner.name,
                                 "bayes_path": str(self.dbdir / "bayes") if bayes_path else ""},
                "jobs": {"learn-spam": {"staging_dir": str(self.root), "timeout": "60s", **job}}}

    def run(self, *, dry_run: bool = False, cancel: threading.Event | None = None,
            **cfg: Any) -> tuple[RunOutcome, list[dict[str, Any]]]:
        """run_job("learn-spam") as `mailopsd run-job` does; returns (outcome, events)."""
        self.events.seek(0)
        self.events.truncate()
        logs.configure("json", "debug", stream=self.events)
        outcome = run_job("learn-spam", parse_config(self.config(**cfg)),
                          StateDB(str(self.root / "state")), dry_run=dry_run, cancel=cancel)
        return outcome, [json.loads(line) for line in self.events.getvalue().splitlines()]

    def magic(self, dbpath: str) -> tuple[int, int]:
        """(nspam, nham) of a database, read with sa-learn --dump magic as its owner."""
        res = run(["/usr/bin/sa-learn", "--dbpath", dbpath, "--dump", "magic"], timeout=60,
                  account=self.owner.account)
        values = {line.split()[-1]: int(line.split()[2]) for line in res.stdout.splitlines()
                  if "non-token data: n" in line}
        return values["nspam"], values["nham"]


@contextlib.contextmanager
def make_scene(mail_root: Path) -> Iterator[Scene]:
    """A Scene whose users are deleted afterwards."""
    with TestUser(mail_root, prefix="lsu") as user, \
            TestUser(mail_root, prefix="lso", maildir=False) as owner:
        dbdir = mail_root / "db"
        dbdir.mkdir()
        os.chown(dbdir, owner.uid, owner.gid)
        yield Scene(mail_root, user, owner, dbdir, io.StringIO())


def tree(maildir: Path) -> dict[str, bytes]:
    """Every message file under a Maildir folder (relative path -> content), read as root."""
    out = {}
    for path in sorted(maildir.rglob("*")):
        if path.is_file() and path.parent.name in ("cur", "new"):
            out[str(path.relative_to(maildir))] = path.read_bytes()
    return out


def messages(folder: Path) -> list[tuple[bytes, str, str]]:
    """(content, subdir, flags) of every message in one folder (not its subfolders), sorted."""
    out = []
    for sub in ("cur", "new"):
        for path in (folder / sub).iterdir():
            out.append((path.read_bytes(), sub, path.name.partition(":2,")[2]))
    return sorted(out)


def event(events: list[dict[str, Any]], name: str) -> dict[str, Any]:
    """The one event called ``name``."""
    found = [e for e in events if e["event"] == name]
    assert len(found) == 1, f"{name}: {found}"
    return found[0]


def toml(data: dict[str, Any], prefix: str = "") -> str:
    """Just enough TOML for the test config (tables, strings, numbers, lists of strings)."""
    scalars, tables = [], []
    for key, value in data.items():
        name = f'"{key}"' if "-" in key else key
        if isinstance(value, dict):
            tables.append(toml(value, f"{prefix}{name}."))
        else:
            scalars.append(f"{name} = {json.dumps(value)}")
    head = f"[{prefix[:-1]}]\n" if prefix and scalars else ""
    return head + "".join(f"{line}\n" for line in scalars) + "".join(tables)
