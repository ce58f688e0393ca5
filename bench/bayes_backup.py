#!/usr/bin/env python3
"""bayes-backup: mailopsd's validated backup vs the seed's bare ``sa-learn --backup > FILE``.

Builds a Bayes database of N spam + N ham messages (default 3000 + 3000) owned by a fresh test
user, then times, alternating, several runs of:

- bare:     ``sa-learn --sync`` then ``sa-learn --backup > FILE`` as the owner (no checks);
- mailopsd: ``run_job("bayes-backup")``: sync (only if the journal is not empty), ``--dump
            magic`` and ``--backup`` side by side, structure + counts check, gzip, fsync,
            atomic rename, sha256 manifest, retention;
- restore:  ``mailopsd bayes restore`` of that backup (validation, safety backup, restore,
            magic check), for reference.

Target: bayes-backup of a 6,000-message database <= 3 s.
Run as root from the repository: ``.venv/bin/python bench/bayes_backup.py [--messages 3000]``.
"""

from __future__ import annotations

import argparse
import io
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mailopsd.core import logs
from mailopsd.core.config import parse_config
from mailopsd.core.state import StateDB
from mailopsd.daemon.runner import run_job
from mailopsd.spam.bayes_ops import restore
from tests.support.common import scratch_root
from tests.support.users import TestUser

WORDS = {
    "spam": ("viagra", "cheap", "pills", "winner", "lottery", "casino", "bonus", "offer",
             "free", "money", "urgent", "prince", "transfer", "bitcoin", "crypto", "click"),
    "ham": ("meeting", "agenda", "minutes", "project", "budget", "review", "draft", "schedule",
            "invoice", "report", "team", "lunch", "thanks", "regards", "tomorrow", "notes"),
}


def corpus(root: Path, kind: str, count: int) -> Path:
    """``count`` distinct ~1.5 KB messages of one class, readable by everyone."""
    rng = random.Random(kind)
    folder = root / kind
    folder.mkdir(mode=0o755)
    for i in range(count):
        body = "\n".join(" ".join(rng.choice(WORDS[kind]) + str(rng.randrange(5000))
                                  for _ in range(12)) for _ in range(12))
        path = folder / f"{i}.eml"
        path.write_text(f"From: s{i}@example.test\nTo: u@example.test\nSubject: {kind} {i}\n"
                        f"Message-ID: <{kind}.{i}@example.test>\n\n{body}\n")
        path.chmod(0o644)
    return folder


def main() -> int:
    """Build the database, time the variants, print the table."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--messages", type=int, default=3000, help="per class (default 3000)")
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    logs.configure("json", "warning", stream=io.StringIO())
    with scratch_root("mo-bench-bayes-") as root, TestUser(root, maildir=False) as owner:
        start = time.monotonic()
        for kind in ("spam", "ham"):
            owner.run(["sa-learn", f"--{kind}", str(corpus(root, kind, args.messages))],
                      timeout=1800)
        print(f"built a {2 * args.messages}-message database in "
              f"{time.monotonic() - start:.1f} s")
        cfg = parse_config({
            "daemon": {"state_dir": str(root / "state"), "run_dir": str(root / "run")},
            "spamassassin": {"bayes_owner": owner.name},
            "jobs": {"bayes-backup": {"keep_daily": 1, "keep_weekly": 0, "keep_monthly": 0}},
        })
        state = StateDB(cfg.daemon.state_dir)
        bare: list[float] = []
        ours: list[float] = []
        size = 0
        for _ in range(args.runs):
            t = time.monotonic()
            owner.run(["sa-learn", "--sync"], timeout=600)
            dump = owner.run(["sa-learn", "--backup"], timeout=600).stdout
            (root / "bare.backup").write_bytes(dump)
            bare.append(time.monotonic() - t)
            t = time.monotonic()
            outcome = run_job("bayes-backup", cfg, state, trigger="bench")
            ours.append(time.monotonic() - t)
            if outcome.result != "ok":
                print(f"bayes-backup failed: {outcome.error}")
                return 1
            size = int(outcome.counts["bytes"])
        path = str(outcome.counts["path"])
        t = time.monotonic()
        restore(cfg, path, logs.get_logger("bench"))
        restored = time.monotonic() - t
        b, o = statistics.median(bare), statistics.median(ours)
        print(f"\n{2 * args.messages} messages, {outcome.counts['ntokens']} tokens; "
              f"dump {len(dump) / 1e6:.2f} MB, gzip {size / 1e6:.2f} MB; median of {args.runs}")
        print(f"{'variant':<46}{'median s':>10}{'ratio':>8}")
        print(f"{'bare: sa-learn --sync; sa-learn --backup > FILE':<46}{b:>10.2f}{1:>8.2f}")
        print(f"{'mailopsd bayes-backup (validated, gzip, fsync)':<46}{o:>10.2f}{o / b:>8.2f}")
        print(f"{'mailopsd bayes restore (incl. safety backup)':<46}{restored:>10.2f}"
              f"{restored / b:>8.2f}")
        print(f"target <= 3 s: {'met' if o <= 3 else 'MISSED'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
