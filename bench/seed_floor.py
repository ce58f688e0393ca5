"""The seed's own method in plain Python: the floor scan-log must beat (issue 12, item 3).

    python bench/seed_floor.py LOG [--maxretry 10]

ip-block.pl counted "no host name found for IP address X" lines and blocked every address
seen more than ten times. Done the plainest fast way: one loop over the file, one regex, a
Counter. One rule, no timestamps, no windows, no other rules: scan-log does all of those.
"""

from __future__ import annotations

import re
import sys
from collections import Counter

NO_RDNS = re.compile(r"no host name found for IP address (\S+)")


def main() -> None:
    path = sys.argv[1]
    maxretry = int(sys.argv[sys.argv.index("--maxretry") + 1]) if "--maxretry" in sys.argv else 10
    seen: Counter[str] = Counter()
    lines = 0
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            lines += 1
            m = NO_RDNS.search(line)
            if m:
                seen[m.group(1)] += 1
    banned = [ip for ip, n in seen.items() if n > maxretry]
    print(f"{lines} lines, {sum(seen.values())} matched, {len(banned)} would be blocked")


if __name__ == "__main__":
    main()
