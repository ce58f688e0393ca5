"""Package layout and the C extensions (metadata lives in pyproject.toml).

jobs/ sits at the top of the repository, as the design card asks, but is installed as
``mailopsd.jobs``: the wheel must never install a top-level module called ``jobs``.

``mailopsd.blocker._fastscan`` is scan-log's hot path in C, ``mailopsd.blocker._fastcount``
the ban policy's counting loop (Debian bookworm's setuptools 66 builds extensions only from
setup.py). Both are optional at run time: without them ``mailopsd.blocker.fastpath`` reads the
same lines and ``mailopsd.blocker.batch`` counts the same events in Python.
"""

from setuptools import Extension, find_packages, setup

packages = find_packages(include=["mailopsd", "mailopsd.*"])
packages += ["mailopsd.jobs"] + [f"mailopsd.jobs.{p}" for p in find_packages("jobs")]

FLAGS = ["-O2", "-Wall", "-Wextra", "-Werror=implicit-function-declaration"]

fastscan = Extension(
    "mailopsd.blocker._fastscan",
    sources=["mailopsd/blocker/_fastscan.c", "mailopsd/blocker/fastscan_search.c",
             "mailopsd/blocker/fastscan_lines.c", "mailopsd/blocker/fastscan_addr.c"],
    depends=["mailopsd/blocker/fastscan_lines.h", "mailopsd/blocker/fastscan_search.h"],
    define_macros=[("_GNU_SOURCE", "1")],  # memmem, memrchr
    extra_compile_args=FLAGS)

fastcount = Extension(
    "mailopsd.blocker._fastcount",
    sources=["mailopsd/blocker/_fastcount.c", "mailopsd/blocker/fastcount_state.c",
             "mailopsd/blocker/fastcount_slots.c"],
    depends=["mailopsd/blocker/fastcount_state.h"],
    extra_compile_args=FLAGS)

setup(packages=packages, package_dir={"mailopsd": "mailopsd", "mailopsd.jobs": "jobs"},
      ext_modules=[fastscan, fastcount],
      exclude_package_data={"": ["*.c", "*.h"]})  # the sources build the module, not ship
