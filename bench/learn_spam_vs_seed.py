#!/usr/bin/env python3
"""learn-spam: mailopsd's batched run vs the seed's learn-spam.pl way vs one bare sa-learn.

The same N users x M messages (half spam in ``.INBOX.Spam``, half ham in ``.INBOX.Not Spam``,
split over new/ and cur/) are delivered before each variant, each into a fresh Bayes database:

- seed:     learn-spam.pl's loop: one ``sa-learn --ham|--spam DIR`` per cur/new directory per
            folder per user, as root (4 calls per user), then ``rm -fr DIR/*``;
- floor:    ONE bare ``sa-learn -f LIST`` over every file (both classes), as root, nothing else;
- mailopsd: ``run_job("learn-spam")``: as-user snapshots, staging, one sa-learn per class as the
            database owner, as-user clean-up (spam deleted, ham back to INBOX read).

Run as root from the repository: ``.venv/bin/python bench/learn_spam_vs_seed.py``
(``--users 20 --messages 100`` are the defaults; ``--skip-seed`` for a quick look).
"""

from __future__ import annotations

import argparse
import glob
import io
import json
import os
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mailopsd.core import logs
from mailopsd.core.config import parse_config
from mailopsd.core.state import StateDB
from mailopsd.daemon.runner import run_job
from tests.support.common import scratch_root
from tests.support.users import TestUser

SPAM_WORDS = ("viagra", "cheap", "pills", "winner", "lottery", "casino", "bonus", "offer",
              "free", "money", "urgent", "prince", "transfer", "bitcoin", "crypto",
              "investment", "guaranteed", "click", "unsubscribe", "replica")
HAM_WORDS = ("meeting", "agenda", "minutes", "project", "budget", "review", "draft",
             "schedule", "invoice", "report", "team", "lunch", "thanks", "regards",
             "tomorrow", "attached", "notes", "quarterly", "planning")
SA_LEARN = "/usr/bin/sa-learn"

_WRITE = """
import json, os, sys
base = os.path.join(os.environ["HOME"], "Maildir")
for folder, sub, name, text in json.load(sys.stdin):
    fd = os.open(os.path.join(base, folder, sub, name), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.write(fd, text.encode())
    os.close(fd)
"""


def message(rng: random.Random, words: tuple[str, ...], n: int, tag: str) -> str:
    """A distinct ~2 KB message."""
    body = "\n".join(" ".join(rng.choice(words) + str(rng.randrange(1000)) for _ in range(12))
                     for _ in range(20))
    return (f"From: sender{n}@{tag}.example\nTo: user@example.test\n"
            f"Subject: {tag} {n} {rng.choice(words)}\nMessage-ID: <{tag}{n}.{rng.random()}@b>\n"
            f"Date: Tue, 24 Nov 2026 10:00:00 +0000\n\n{body}\n")


def deliver_all(users: list[TestUser], per_user: int, seed: int) -> None:
    """Write every user's messages as the user (one process per user)."""
    rng = random.Random(seed)
    for u, user in enumerate(users):
        batch = []
        for i in range(per_user):
            spam = i % 2 == 0
            words = SPAM_WORDS if spam else HAM_WORDS
            folder = ".INBOX.Spam" if spam else ".INBOX.Not Spam"
            sub = "new" if i % 4 < 2 else "cur"
            name = f"17955{u:03d}{i:04d}.M{i}P{u}.bench" + (":2," if sub == "cur" else "")
            batch.append((folder, sub, name, message(rng, words, u * 1000 + i,
                                                     "spam" if spam else "ham")))
        user.python(_WRITE, input=json.dumps(batch).encode())


def seed_way(users: list[TestUser], dbpath: str, home: str) -> float:
    """learn-spam.pl: ham then spam, one sa-learn per [cn]?? directory, as root; then rm."""
    env = {"PATH": "/usr/bin:/bin", "HOME": home, "LANG": "C.UTF-8"}
    start = time.monotonic()
    for folder, klass in ((".INBOX.Not Spam", "--ham"), (".INBOX.Spam", "--spam")):
        for user in users:
            for d in sorted(glob.glob(glob.escape(str(user.maildir / folder)) + "/[cn]??")):
                subprocess.run([SA_LEARN, "--dbpath", dbpath, klass, d], env=env,
                               capture_output=True, check=False)
                for f in os.listdir(d):
                    os.unlink(os.path.join(d, f))
    return time.monotonic() - start


def floor_way(users: list[TestUser], dbpath: str, home: str, root: Path) -> float:
    """One sa-learn over a list of every file (both classes), as root."""
    start = time.monotonic()
    lines = []
    for user in users:
        for folder, klass in ((".INBOX.Spam", "spam"), (".INBOX.Not Spam", "ham")):
            for sub in ("new", "cur"):
                d = user.maildir / folder / sub
                lines += [f"{klass}:file:{d / n}\n" for n in sorted(os.listdir(d))]
    listfile = root / "floor.list"
    listfile.write_text("".join(lines))
    subprocess.run([SA_LEARN, "--dbpath", dbpath, "--max-size", "0", "-f", str(listfile)],
                   env={"PATH": "/usr/bin:/bin", "HOME": home, "LANG": "C.UTF-8"},
                   capture_output=True, check=True)
    return time.monotonic() - start


def mailopsd_way(users: list[TestUser], owner: TestUser, root: Path, dbdir: Path) -> float:
    """run_job("learn-spam") exactly as ``mailopsd run-job learn-spam`` does."""
    cfg = parse_config({
        "daemon": {"state_dir": str(root / "state"), "run_dir": str(root / "run")},
        "mailboxes": {"users": [u.name for u in users]},
        "spamassassin": {"bayes_owner": owner.name, "bayes_path": str(dbdir / "bayes")},
        "jobs": {"learn-spam": {"staging_dir": str(root)}}})
    logs.configure("json", "info", stream=io.StringIO())
    start = time.monotonic()
    outcome = run_job("learn-spam", cfg, StateDB(str(root / "state")))
    elapsed = time.monotonic() - start
    if outcome.result != "ok":
        raise SystemExit(f"mailopsd run failed: {outcome.error}")
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=20)
    parser.add_argument("--messages", type=int, default=100, help="per user (half spam)")
    parser.add_argument("--repeat", type=int, default=3,
                        help="runs of floor and mailopsd (median); the seed runs once")
    parser.add_argument("--skip-seed", action="store_true")
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("run as root (it creates test users)")
    total = args.users * args.messages
    with scratch_root("mailopsd-bench-") as root:
        users: list[TestUser] = []
        owner = TestUser(root, prefix="lsbo", maildir=False)
        try:
            owner.start()
            for _ in range(args.users):
                users.append(TestUser(root, prefix="lsbu", folders=(".INBOX.Spam",
                                                                    ".INBOX.Not Spam")).start())
            dbdir = root / "db-mailopsd"
            dbdir.mkdir()
            os.chown(dbdir, owner.uid, owner.gid)
            root_home = root / "roothome"
            root_home.mkdir(mode=0o700)
            times: dict[str, list[float]] = {"floor": [], "mailopsd": [], "seed": []}
            for n in range(args.repeat):  # alternate, each into a fresh database
                deliver_all_fresh(users, args.messages)
                times["floor"].append(floor_way(users, str(root / f"db-floor{n}" / "bayes"),
                                                str(root_home), root))
                deliver_all_fresh(users, args.messages)
                for f in dbdir.iterdir():
                    f.unlink()
                times["mailopsd"].append(mailopsd_way(users, owner, root, dbdir))
            if not args.skip_seed:
                deliver_all_fresh(users, args.messages)
                times["seed"].append(seed_way(users, str(root / "db-seed" / "bayes"),
                                              str(root_home)))
            results = {k: statistics.median(v) for k, v in times.items() if v}
        finally:
            for user in [*users, owner]:
                user.stop()
    print(f"learn-spam, {args.users} users x {args.messages} messages = {total} messages "
          f"({os.cpu_count()} cores)")
    for name, secs in results.items():
        runs = " ".join(f"{t:.2f}" for t in times[name])
        print(f"  {name:9s} {secs:8.2f} s   {secs / total * 1000:6.2f} ms/message   (runs: {runs})")
    print(f"  mailopsd / floor = {results['mailopsd'] / results['floor']:.2f}x (target <= 1.25)")
    if "seed" in results:
        print(f"  seed / mailopsd  = {results['seed'] / results['mailopsd']:.2f}x faster "
              "(target >= 3)")
    return 0


def deliver_all_fresh(users: list[TestUser], per_user: int) -> None:
    """Empty the folders and the INBOX, then deliver the same messages again."""
    for user in users:
        for folder in ("", ".INBOX.Spam", ".INBOX.Not Spam"):
            for sub in ("new", "cur"):
                d = user.maildir / folder / sub
                for f in os.listdir(d):
                    os.unlink(d / f)
    deliver_all(users, per_user, 1)


if __name__ == "__main__":
    sys.exit(main())
