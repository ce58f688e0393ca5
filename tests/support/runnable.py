"""A ``mailopsd`` that a mailbox user can execute, for tests where a user's process runs it
(an Exim ``.forward`` pipe, a Dovecot sieve pipe).

CI clones into a folder we do not choose; when its parents are 0700 (a clone under /root) the
users cannot reach the venv, so a private world-readable copy of mailopsd is run by Debian's
python3 instead (its libraries come from Debian's dist-packages, which ``-I`` keeps).
"""

from __future__ import annotations

import sys
from pathlib import Path

from tests.support.users import TestUser

VENV_MAILOPSD = str(Path(sys.executable).with_name("mailopsd"))
# Used when the checkout or its venv is not reachable by other users (a clone under /root,
# mode 0700): a private copy of mailopsd (and structlog, its one non-stdlib import on this
# path) under the test's 0755 root, run by Debian's python3.
WRAPPER = """#!/usr/bin/python3 -I
import sys
sys.path.insert(0, {lib!r})
from mailopsd.cli.main import main
sys.exit(main())
"""


def _private_copy(root: Path) -> Path:
    """Copy mailopsd (with jobs/ as mailopsd.jobs) and structlog into root/lib, world-readable."""
    import shutil

    import structlog

    import mailopsd

    lib = root / "lib"
    if not lib.exists():
        src = Path(mailopsd.__file__).parent
        ignore = shutil.ignore_patterns("__pycache__")
        shutil.copytree(src, lib / "mailopsd", ignore=ignore)
        jobs = src.parent / "jobs"
        if jobs.is_dir() and not (lib / "mailopsd" / "jobs").exists():
            shutil.copytree(jobs, lib / "mailopsd" / "jobs", ignore=ignore)
        shutil.copytree(Path(structlog.__file__).parent, lib / "structlog", ignore=ignore)
        for path in [lib, *lib.rglob("*")]:
            path.chmod(0o755 if path.is_dir() else 0o644)
    return lib


def mailopsd_for(user: TestUser, root: Path) -> str:
    """An absolute path to a mailopsd the user can execute (checked by running it as them)."""
    try:
        if user.run([VENV_MAILOPSD, "--version"], check=False).returncode == 0:
            return VENV_MAILOPSD
    except OSError:  # not executable for the user at all (EACCES on a parent directory)
        pass
    wrapper = root / "bin" / "mailopsd"
    if not wrapper.exists():
        wrapper.parent.mkdir(mode=0o755, exist_ok=True)
        wrapper.write_text(WRAPPER.format(lib=str(_private_copy(root))))
        wrapper.chmod(0o755)
    res = user.run([str(wrapper), "--version"], check=False)
    assert res.returncode == 0, f"no mailopsd runnable by {user.name}: {res.stderr!r}"
    return str(wrapper)
