#!/usr/bin/env bash
# Alternate the peer (Restate, ../shared/peers/restate-bench.sh) and bench.core, and
# print each row per round with the ratio: see bench/compare.py. Extra arguments go to it.
set -euo pipefail
cd "$(dirname "$0")/.."
exec "${PYTHON:-.venv/bin/python}" -m bench.compare "$@"
