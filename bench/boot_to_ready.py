"""Boot-to-READY of the packaged mailopsd under a real systemd (PID 1) in a Debian 12 container.

Builds the .deb, boots the cached test rootfs (tests/support/container.py), installs the
package, then measures:
- ``systemctl start mailopsd`` wall time, N times (it returns only once the unit is active,
  i.e. after READY=1, ExecStartPre check-config included), and systemd's own figure
  (ActiveEnterTimestampMonotonic - InactiveExitTimestampMonotonic);
- a container reboot: from powering on to ``mailopsd`` active.

Run as root: ``.venv/bin/python bench/boot_to_ready.py [--runs 10]``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support.container import Container
from tests.support.debpkg import build_deb


def show(ct: Container, prop: str) -> str:
    return ct.run(["systemctl", "show", "-p", prop, "--value", "mailopsd"]).stdout.strip()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir="/var/tmp") as tmp:
        deb = build_deb(Path(tmp))
        with Container() as ct:
            ct.put(deb, f"/srv/{deb.name}")
            ct.run(["apt-get", "install", "-y", f"/srv/{deb.name}"], timeout=300)
            walls, systemd = [], []
            for _ in range(args.runs):
                ct.run(["systemctl", "stop", "mailopsd"])
                # many starts in a row would hit the unit's start rate limit (5 in 10 s)
                ct.run(["systemctl", "reset-failed", "mailopsd"], check=False)
                start = time.monotonic()
                ct.run(["systemctl", "start", "mailopsd"])
                walls.append(time.monotonic() - start)
                systemd.append((int(show(ct, "ActiveEnterTimestampMonotonic"))
                                - int(show(ct, "InactiveExitTimestampMonotonic"))) / 1e6)
            ct.poweroff()
            start = time.monotonic()
            ct.boot()
            while show(ct, "ActiveState") != "active":
                time.sleep(0.05)
            reboot = time.monotonic() - start
    print(f"systemctl start -> active (wall, incl. nsenter): median "
          f"{statistics.median(walls):.3f} s, min {min(walls):.3f} s, "
          f"max {max(walls):.3f} s over {args.runs} runs")
    print(f"systemd's start-to-active (check-config + start + READY=1): median "
          f"{statistics.median(systemd):.3f} s, min {min(systemd):.3f} s, "
          f"max {max(systemd):.3f} s")
    print(f"container power-on to mailopsd active: {reboot:.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
