"""Build mailopsd's Debian package from a clean copy of this checkout (for the systemd tests).

The copy holds exactly the files git knows (tracked, plus untracked ones not ignored: work in
progress is tested too), never .venv, caches or earlier build products. ``dpkg-buildpackage``
runs with a clean environment so Debian's own python3 builds it (not a pyenv one on PATH).
"""

from __future__ import annotations

import email.utils
import os
import shutil
import subprocess
from pathlib import Path

from tests.support.common import SupportError

REPO = Path(__file__).resolve().parents[2]
CLEAN_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/root", "LANG": "C.UTF-8"}


def source_files() -> list[str]:
    out = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO,
                         capture_output=True, check=True, timeout=60).stdout
    return [f for f in out.decode().split("\0") if f and os.path.lexists(REPO / f)]


def version_of(changelog: Path) -> str:
    first = changelog.read_text().splitlines()[0]
    return first.split("(", 1)[1].split(")", 1)[0]


def build_deb(workdir: Path, version: str | None = None) -> Path:
    """Build the .deb under ``workdir``; ``version`` adds a changelog entry (an upgrade)."""
    src = workdir / "mailopsd"
    if src.exists():
        shutil.rmtree(src)
    src.mkdir(parents=True)
    for rel in source_files():
        dest = src / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        if (REPO / rel).is_symlink():
            dest.symlink_to((REPO / rel).readlink())
        else:
            shutil.copy2(REPO / rel, dest)
    changelog = src / "debian" / "changelog"
    if version is not None:
        stamp = email.utils.formatdate(usegmt=False)
        entry = (f"mailopsd ({version}) unstable; urgency=medium\n\n"
                 f"  * Test build for the upgrade check.\n\n"
                 f" -- mailopsd developers <mailopsd@example.org>  {stamp}\n\n")
        changelog.write_text(entry + changelog.read_text())
    version = version_of(changelog)
    result = subprocess.run(["dpkg-buildpackage", "-us", "-uc", "-b"], cwd=src, env=CLEAN_ENV,
                            capture_output=True, text=True, timeout=600, check=False)
    if result.returncode != 0:
        raise SupportError(f"dpkg-buildpackage failed:\n{result.stdout[-3000:]}\n"
                           f"{result.stderr[-3000:]}")
    # Architecture: any (scan-log's C extension): mailopsd_VERSION_amd64.deb and the like
    debs = sorted(workdir.glob(f"mailopsd_{version}_*.deb"))
    if len(debs) != 1:
        raise SupportError(f"dpkg-buildpackage made no mailopsd_{version}_ARCH.deb: "
                           f"{sorted(workdir.iterdir())}")
    return debs[0]
