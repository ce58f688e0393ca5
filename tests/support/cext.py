"""Compiling the C extensions' sources as strictly as their tests ask (no Python needed)."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sysconfig
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def compile_strict(tmp_path: Path, sources: list[str], *flags: str) -> None:
    """Compile ``sources`` (paths from the repository root) into a shared object with
    ``-Wall -Wextra -Werror``; fails the test with gcc's messages, skips without gcc or
    python3-dev."""
    gcc = shutil.which("gcc")
    include = sysconfig.get_paths()["include"]
    if gcc is None or not (Path(include) / "Python.h").exists():
        pytest.skip("no gcc or python3-dev")
    out = subprocess.run(
        [gcc, "-O2", "-Wall", "-Wextra", "-Werror", *flags, "-fPIC", "-shared", f"-I{include}",
         *(str(REPO / s) for s in sources), "-o", str(tmp_path / "x.so")],
        capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr


def extension_sources(module: str) -> list[str]:
    """The C sources setup.py builds ``module`` from (so a strict compile never misses one)."""
    for node in ast.walk(ast.parse((REPO / "setup.py").read_text())):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "Extension" and \
                ast.literal_eval(node.args[0]) == module:
            sources = next(k.value for k in node.keywords if k.arg == "sources")
            return list(ast.literal_eval(sources))
    raise AssertionError(f"setup.py builds no {module}")
