#!/usr/bin/env bash
# Quick start on a fresh Debian 12 machine (as root): install everything, then run the demo.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
exec .venv/bin/python scripts/demo.py "$@"
