#!/usr/bin/env python3
"""Live learning: learn-enqueue latency and move-to-trained latency, vs the Dovecot wiki's way.

Scene (all real, as in tests/integration/livelearn_scene.py): a private Dovecot with the shipped
IMAPSieve pieces, USERS test users with MOVES/USERS messages each in their INBOX, the real
``mailopsd run`` with live-learn on (batch_wait 2 s, the default), the real sa-learn.

- enqueue: ``mailopsd -c CFG learn-enqueue spam`` run as a user with a 4 KB message on stdin,
  wall clock per process (what Dovecot's sieve pipe waits for), ENQUEUES times round-robin;
- MOVE round trip: how long each IMAP client waits for its UID MOVE (Dovecot runs the sieve
  script and the pipe before it answers), next to a MOVE to Trash (no rule, no script) made by
  the same clients in between;
- move-to-trained: USERS imaplib clients at once, each UID MOVEs its messages one by one into
  INBOX/Spam (a random 0-400 ms pause between moves); each move's latency is from the MOVE
  command being sent to the daemon's ``live_learn_learned`` event that counted it (events are
  matched to a user's moves in order);
- peer: the wiki recipe pipes each message to ``sa-learn --spam`` (one process per message,
  as the database owner): PEER calls timed, and the ratio to learn-enqueue printed.

Run as root from the repository: ``.venv/bin/python bench/live_learn.py`` (defaults
``--users 10 --moves 200 --enqueues 200 --peer 20``).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.integration.livelearn_scene import live_scene, message
from tests.support.common import scratch_root, wait_until
from tests.support.daemon import MAILOPSD


def pct(values: list[float], p: float) -> float:
    """The p-th percentile (nearest rank) of values, in the same unit."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered) + 0.5) - 1))]


def line(name: str, values: list[float], unit: str = "ms", scale: float = 1000.0) -> str:
    v = [x * scale for x in values]
    return (f"{name:<44} n={len(v):<4} p50={pct(v, 50):8.1f} {unit}  p99={pct(v, 99):8.1f} "
            f"{unit}  max={max(v):8.1f} {unit}")


def bench_enqueue(scene, count: int) -> list[float]:  # type: ignore[no-untyped-def]
    times = []
    body = message(0, size=4096)
    for n in range(count):
        user = scene.users[n % len(scene.users)]
        start = time.perf_counter()
        res = user.run([scene.exe, "-c", str(scene.config), "learn-enqueue", "ham"],
                       input=body, check=False)
        times.append(time.perf_counter() - start)
        assert res.returncode == 0 and res.stderr == b"", res.stderr
    return times


def bench_floor(scene, argv: list[str], count: int) -> list[float]:  # type: ignore[no-untyped-def]
    """The same process start as learn-enqueue, of a program that does nothing."""
    times = []
    for n in range(count):
        user = scene.users[n % len(scene.users)]
        start = time.perf_counter()
        user.run(argv, input=b"x", check=True)
        times.append(time.perf_counter() - start)
    return times


def bench_peer(scene, count: int) -> list[float]:  # type: ignore[no-untyped-def]
    times = []
    for n in range(count):
        start = time.perf_counter()
        subprocess.run(["runuser", "-u", scene.owner.name, "--", "sa-learn", "--dbpath",
                        str(scene.dbdir / "peer"), "--spam"], input=message(1000 + n),
                       capture_output=True, check=True, timeout=120)
        times.append(time.perf_counter() - start)
    return times


def bench_moves(scene, per_user: int) -> tuple[list[float], list[int], list[float], list[float]]:  # type: ignore[no-untyped-def]
    proc = subprocess.Popen([MAILOPSD, "-c", str(scene.config), "run"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    learned: list[tuple[float, dict]] = []  # type: ignore[type-arg]
    ready = threading.Event()

    def read() -> None:
        assert proc.stderr is not None
        for raw in proc.stderr:
            if not raw.startswith(b"{"):
                continue
            ev = json.loads(raw)
            if ev.get("event") == "live_learn_ready":
                ready.set()
            elif ev.get("event") == "live_learn_learned":
                learned.append((time.time(), ev))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    moves: dict[str, list[float]] = {u.name: [] for u in scene.users}
    rtt: list[float] = []  # how long each IMAP client waited for its MOVE (sieve + pipe)
    rtt_floor: list[float] = []  # ... for a MOVE to Trash, which runs no sieve script
    try:
        assert ready.wait(60), "daemon not ready"

        def mover(user) -> None:  # type: ignore[no-untyped-def]
            imap = scene.dovecot.imap(user, timeout=60)
            try:
                imap.select("INBOX")
                for uid in range(1, per_user + 1):
                    time.sleep(random.uniform(0, 0.4))
                    moves[user.name].append(time.time())
                    start = time.perf_counter()
                    assert imap.uid("MOVE", str(uid), '"INBOX/Spam"')[0] == "OK"
                    rtt.append(time.perf_counter() - start)
                    if uid % 4 == 0:  # the floor: a move no imapsieve rule matches
                        start = time.perf_counter()
                        extra = per_user + uid // 4
                        assert imap.uid("MOVE", str(extra), "Trash")[0] == "OK"
                        rtt_floor.append(time.perf_counter() - start)
            finally:
                imap.logout()

        threads = [threading.Thread(target=mover, args=(u,)) for u in scene.users]
        for t in threads:
            t.start()
        for t in threads:
            t.join(600)
        total = per_user * len(scene.users)
        wait_until(lambda: sum(e["count"] for _, e in learned) >= total, 600, interval=0.2,
                   what="every move trained")
    finally:
        proc.terminate()
        proc.wait(30)
    latencies: list[float] = []
    batches = []
    for name, times in moves.items():
        queue = sorted(times)
        for at, ev in sorted(learned, key=lambda x: x[0]):
            if ev["user"] != name:
                continue
            for _ in range(ev["count"]):
                latencies.append(at - queue.pop(0))
    for _, ev in learned:
        batches.append(ev["count"])
    return latencies, batches, rtt, rtt_floor


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--users", type=int, default=10)
    ap.add_argument("--moves", type=int, default=200)
    ap.add_argument("--enqueues", type=int, default=200)
    ap.add_argument("--peer", type=int, default=20)
    ap.add_argument("--enqueue-only", action="store_true", help="skip the moves and the peer")
    args = ap.parse_args()
    per_user = args.moves // args.users
    with scratch_root("mailopsd-bench-live-") as root, live_scene(
            root, users=args.users, live_learn={"batch_wait": "2s"}) as scene:
        for user in scene.users:
            scene.fill_inbox(user, per_user + per_user // 4)
        from mailopsd.livelearn.drain import Spool

        Spool(str(scene.spool)).ensure()
        floor_true = bench_floor(scene, ["/bin/true"], args.enqueues)
        floor_py = bench_floor(scene, [sys.executable, "-c", "pass"], args.enqueues)
        enq = bench_enqueue(scene, args.enqueues)
        for name in os.listdir(scene.spool):  # not part of the move benchmark
            if name.startswith("ham."):
                os.unlink(scene.spool / name)
        print(line("floor: /bin/true as the user", floor_true))
        print(line("floor: venv python -c pass as the user", floor_py))
        print(line("learn-enqueue (process wall clock)", enq), flush=True)
        if args.enqueue_only:
            return 0
        lat, batches, rtt, rtt_floor = bench_moves(scene, per_user)
        peer = bench_peer(scene, args.peer)
        assert scene.magic()[0] == per_user * args.users, scene.magic()
        assert scene.dovecot is not None and scene.dovecot.log_errors() == []
    print(line("peer: sa-learn --spam per message (wiki)", peer))
    print(line("floor: UID MOVE to Trash (no sieve run)", rtt_floor))
    print(line("IMAP UID MOVE into Spam (sieve + pipe)", rtt))
    print(line(f"move-to-trained ({args.users} users at once)", lat, "s", 1.0))
    print(f"{'batches (live_learn_learned events)':<44} n={len(batches):<4} "
          f"mean size={statistics.mean(batches):.1f}")
    print(f"ratio peer/enqueue (p50): {pct(peer, 50) / pct(enq, 50):.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
