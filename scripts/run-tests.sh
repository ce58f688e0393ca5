#!/usr/bin/env bash
# Run mailopsd's checks and test suite (as root: the integration tests start real Exim, Dovecot,
# spamd and journald, and make network namespaces). Extra arguments go to pytest, e.g.
#   scripts/run-tests.sh -m "not integration"      # the fast unit tests only
set -euo pipefail
cd "$(dirname "$0")/.."
# pytest is Debian's python3-pytest, seen through the venv's system site packages: no
# .venv/bin/pytest script, so it runs as a module.
if [ ! -x .venv/bin/python ] || ! .venv/bin/python -c 'import pytest, mailopsd' 2>/dev/null; then
  echo "run-tests.sh: no usable .venv; run scripts/install.sh (or scripts/quickstart.sh) first" >&2
  exit 2
fi
.venv/bin/ruff check mailopsd jobs tests bench
.venv/bin/mypy
exec .venv/bin/python -m pytest "$@"
