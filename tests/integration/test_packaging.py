"""The built wheel installs mailopsd (with jobs/ as mailopsd.jobs) and nothing called `jobs`."""

from __future__ import annotations

import shutil
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Build the wheel from a copy of the source tree (the checkout is left untouched)."""
    base = tmp_path_factory.mktemp("wheel")
    src = base / "src"
    shutil.copytree(REPO, src, ignore=shutil.ignore_patterns(
        ".git", ".venv", "build", "*.egg-info", "__pycache__", ".*_cache", ".hypothesis"))
    out = base / "dist"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(out),
                    str(src)], check=True, capture_output=True, timeout=300)
    (found,) = out.glob("mailopsd-*.whl")
    return found


def test_wheel_maps_jobs_into_the_mailopsd_namespace(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names}
    assert tops == {"mailopsd", next(t for t in tops if t.endswith(".dist-info"))}
    assert not any(n.startswith("jobs/") for n in names), "a top-level jobs package"
    for job in ("learn_spam", "sa_update", "bayes_backup", "bayes_stats", "make_forwards",
                "housekeeping"):
        assert f"mailopsd/jobs/{job}.py" in names
    (entry,) = [n for n in names if n.endswith("entry_points.txt")]
    assert "mailopsd = mailopsd.cli.main:run" in zipfile.ZipFile(wheel).read(entry).decode()


def test_installed_wheel_runs_and_finds_its_jobs(wheel: Path, tmp_path: Path) -> None:
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True, system_site_packages=False)
    pip = env_dir / "bin" / "pip"
    subprocess.run([str(pip), "install", "-q", "--no-deps", str(wheel)], check=True,
                   capture_output=True, timeout=300)
    version = subprocess.run([str(env_dir / "bin" / "mailopsd"), "--version"],
                             capture_output=True, text=True, timeout=60, check=True)
    assert version.stdout.startswith("mailopsd ")
    found = subprocess.run([str(env_dir / "bin" / "python"), "-c",
                            "import importlib.util as u; print(u.find_spec('jobs'), "
                            "u.find_spec('mailopsd.jobs.learn_spam') is not None)"],
                           capture_output=True, text=True, timeout=60, check=True, cwd="/")
    assert found.stdout.split() == ["None", "True"]
