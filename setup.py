"""Package layout and the one C extension (metadata lives in pyproject.toml).

jobs/ sits at the top of the repository, as the design card asks, but is installed as
``mailopsd.jobs``: the wheel must never install a top-level module called ``jobs``.

``mailopsd.blocker._fastscan`` is scan-log's hot path in C (Debian bookworm's setuptools 66
builds extensions only from setup.py). It is optional at run time: without it
``mailopsd.blocker.fastpath`` reads the same lines in Python.
"""

from setuptools import Extension, find_packages, setup

packages = find_packages(include=["mailopsd", "mailopsd.*"])
packages += ["mailopsd.jobs"] + [f"mailopsd.jobs.{p}" for p in find_packages("jobs")]

fastscan = Extension(
    "mailopsd.blocker._fastscan",
    sources=["mailopsd/blocker/_fastscan.c", "mailopsd/blocker/fastscan_lines.c"],
    depends=["mailopsd/blocker/fastscan_lines.h"],
    define_macros=[("_GNU_SOURCE", "1")],  # memmem, memrchr
    extra_compile_args=["-O2", "-Wall", "-Wextra", "-Werror=implicit-function-declaration"])

setup(packages=packages, package_dir={"mailopsd": "mailopsd", "mailopsd.jobs": "jobs"},
      ext_modules=[fastscan],
      exclude_package_data={"": ["*.c", "*.h"]})  # the sources build the module, not ship
