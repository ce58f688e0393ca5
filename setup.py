"""Package layout only (metadata lives in pyproject.toml).

jobs/ sits at the top of the repository, as the design card asks, but is installed as
``mailopsd.jobs``: the wheel must never install a top-level module called ``jobs``.
"""

from setuptools import find_packages, setup

packages = find_packages(include=["mailopsd", "mailopsd.*"])
packages += ["mailopsd.jobs"] + [f"mailopsd.jobs.{p}" for p in find_packages("jobs")]

setup(packages=packages, package_dir={"mailopsd": "mailopsd", "mailopsd.jobs": "jobs"})
