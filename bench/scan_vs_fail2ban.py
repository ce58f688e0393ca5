"""`mailopsd scan-log` vs Debian's `fail2ban-regex ... 'exim[mode=aggressive]'` and the seed's
own method in plain Python (bench/seed_floor.py), side by side.

    .venv/bin/python bench/scan_vs_fail2ban.py [--lines 200000] [--runs 5] [--keep DIR]
                                               [--no-fail2ban]

Generates one synthetic Exim mainlog (bench/gen_mainlog.py, seed 1), then runs the tools on it
``--runs`` times each, paired (scan-log, floor, fail2ban-regex, then floor, scan-log,
fail2ban-regex, ...: the pair's order alternates), as child
processes of this interpreter. For each run: wall time (fork to exit, start-up included), the
tool's own processing time where it reports one, CPU time and peak RSS (the child's rusage from
os.wait4: no sampling). Prints min/median/max of each and the ratios of the medians and of
each pair. Targets (issue 12): scan-log >= 15x fail2ban-regex and faster than the floor in wall
time; scan-log peak RSS <= 60 MB (also on 1M lines).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

GEN = str(Path(__file__).resolve().with_name("gen_mainlog.py"))
MAILOPSD = str(Path(sys.executable).with_name("mailopsd"))
FAIL2BAN_REGEX = "/usr/bin/fail2ban-regex"
FLOOR = str(Path(__file__).resolve().with_name("seed_floor.py"))


def run(argv: list[str]) -> tuple[float, float, int, str]:
    """(wall s, cpu s, peak RSS KiB, stdout) of one child process.

    ru_maxrss survives exec, so it is max(this process at fork, the tool's peak): this process
    stays around 10 MB, far below either tool.
    """
    with tempfile.TemporaryFile() as out:
        t0 = time.perf_counter()
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.DEVNULL,
                                env={**os.environ, "MAILOPSD_CONFIG": ""})
        _, status, ru = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        text = out.read().decode("utf-8", "replace")
    if proc.returncode != 0:
        raise SystemExit(f"{argv[0]} failed with exit code {proc.returncode}")
    return wall, ru.ru_utime + ru.ru_stime, ru.ru_maxrss, text


def scan_log(log: str) -> dict[str, float]:
    """Its default human report, like fail2ban-regex's (``--json`` pretty-prints with Python's
    slower indenting encoder: +25 ms for 790 bans)."""
    wall, cpu, rss, text = run([MAILOPSD, "scan-log", "--no-config", log])
    head = re.search(r"^.*: (\d+) lines in ([\d.]+) s", text, re.M)
    rows = re.findall(r"^[a-z][\w-]+ +(?:yes|no) +\d+ +\S+ +\S+ +(\d+) ", text, re.M)
    bans = re.search(r"^(\d+) ban\(s\) would be made", text, re.M)
    if not head or not rows:
        raise SystemExit("cannot read scan-log's report")
    return {"wall": wall, "cpu": cpu, "rss": rss, "own": float(head.group(2)),
            "lines": int(head.group(1)), "matched": sum(int(r) for r in rows),
            "bans": int(bans.group(1)) if bans else 0}


def floor(log: str) -> dict[str, float]:
    """The seed's method: one loop, one regex, a Counter (same interpreter as scan-log)."""
    wall, cpu, rss, text = run([sys.executable, FLOOR, log])
    m = re.match(r"(\d+) lines, (\d+) matched, (\d+) would be blocked", text)
    if not m:
        raise SystemExit("cannot read the floor's summary")
    return {"wall": wall, "cpu": cpu, "rss": rss, "own": wall, "lines": int(m.group(1)),
            "matched": int(m.group(2)), "bans": int(m.group(3))}


def fail2ban(log: str) -> dict[str, float]:
    wall, cpu, rss, text = run([FAIL2BAN_REGEX, log, "exim[mode=aggressive]"])
    lines = re.search(r"Lines: (\d+) lines, \d+ ignored, (\d+) matched", text)
    own = re.search(r"\[processed in ([\d.]+) sec\]", text)
    if not lines or not own:
        raise SystemExit("cannot read fail2ban-regex's summary")
    return {"wall": wall, "cpu": cpu, "rss": rss, "own": float(own.group(1)),
            "lines": int(lines.group(1)), "matched": int(lines.group(2)), "bans": 0}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--lines", type=int, default=200_000)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--keep", help="write the log into this directory and keep it")
    ap.add_argument("--no-fail2ban", action="store_true", help="scan-log and the floor only")
    args = ap.parse_args()
    tools = {"mailopsd scan-log": scan_log, "seed floor (plain)": floor}
    if not args.no_fail2ban:
        if not shutil.which(FAIL2BAN_REGEX):
            raise SystemExit(f"{FAIL2BAN_REGEX} is missing: apt-get install fail2ban")
        tools["fail2ban-regex"] = fail2ban
    # an installed mailopsd has its bytecode compiled (pip, dh_python3); a dev checkout run
    # with PYTHONDONTWRITEBYTECODE=1 (as on the project's machines) would compile every module
    # from source at each start (~7 ms), which is not what an admin runs
    pkg = Path(__file__).resolve().parent.parent / "mailopsd"
    if pkg.is_dir():
        subprocess.run([sys.executable, "-m", "compileall", "-q", str(pkg)], check=True)
    tmp = args.keep or tempfile.mkdtemp(prefix="mailopsd-bench-")
    log = os.path.join(tmp, "mainlog")
    # generated by a child: the children's peak RSS (rusage) starts from this process's, which
    # must stay small for the numbers to be the tools' own
    if not os.path.exists(log):
        subprocess.run([sys.executable, GEN, log, "--lines", str(args.lines), "--seed", "1"],
                       check=True)
    print(f"log: {log}, {args.lines} lines, {os.path.getsize(log) / 1e6:.1f} MB; "
          f"{args.runs} runs each, paired; CPUs: {os.cpu_count()}, "
          f"load average {os.getloadavg()[0]:.2f}")
    results: dict[str, list[dict[str, float]]] = {k: [] for k in tools}
    try:
        for run_no in range(args.runs):
            # each pair in turn order: the tool that follows fail2ban-regex's seconds of CPU (or
            # the other) does not always meet the same machine state
            order = list(tools.items())
            if run_no % 2:
                order[0], order[1] = order[1], order[0]
            for name, tool in order:
                results[name].append(tool(log))
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    print(f"load average at the end {os.getloadavg()[0]:.2f}")
    print(f"\n{'tool':<19} {'wall s min/med/max':>21} {'cpu s med':>9} {'own s med':>9} "
          f"{'lines/s (wall med)':>18} {'peak RSS max':>12} {'matched':>8} {'bans':>5}")
    med: dict[str, float] = {}
    for name, rs in results.items():
        walls = sorted(r["wall"] for r in rs)
        med[name] = statistics.median(walls)
        r0 = rs[0]
        print(f"{name:<19} {walls[0]:6.3f} /{med[name]:6.3f} /{walls[-1]:6.3f} "
              f"{statistics.median(r['cpu'] for r in rs):9.3f} "
              f"{statistics.median(r['own'] for r in rs):9.3f} "
              f"{r0['lines'] / med[name]:18,.0f} {max(r['rss'] for r in rs) / 1024:10.1f}MB "
              f"{r0['matched']:8.0f} {r0['bans']:5.0f}")
    scan = results["mailopsd scan-log"]
    fl = results["seed floor (plain)"]
    pair_floor = sorted(f["wall"] / m["wall"] for m, f in zip(scan, fl, strict=True))
    ratio = med["seed floor (plain)"] / med["mailopsd scan-log"]
    print(f"\nscan-log vs the floor, wall: median {ratio:.2f}x "
          f"(pairs min/median/max {pair_floor[0]:.2f}/{statistics.median(pair_floor):.2f}/"
          f"{pair_floor[-1]:.2f}x; > 1 = scan-log faster)")
    ok = med["mailopsd scan-log"] < med["seed floor (plain)"]
    if "fail2ban-regex" in results:
        f2b = results["fail2ban-regex"]
        pairs = sorted(f["wall"] / m["wall"] for m, f in zip(scan, f2b, strict=True))
        print(f"scan-log vs fail2ban-regex, wall: median "
              f"{med['fail2ban-regex'] / med['mailopsd scan-log']:.1f}x (pairs min/median/max "
              f"{pairs[0]:.1f}/{statistics.median(pairs):.1f}/{pairs[-1]:.1f}x)")
        ok = ok and med["fail2ban-regex"] >= 15 * med["mailopsd scan-log"]
    rss = max(r["rss"] for r in scan) / 1024
    print(f"scan-log peak RSS {rss:.1f} MB (target <= 60 MB)")
    ok = ok and rss <= 60
    print("targets met" if ok else "TARGETS MISSED")


if __name__ == "__main__":
    main()
