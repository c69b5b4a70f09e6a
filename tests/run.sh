#!/usr/bin/env bash
# The whole test suite: unit tests (no root) and the lab (root: network namespaces, real
# nginx, real daemons). Installs what it needs first (tests/setup.sh).
#
# usage: tests/run.sh [pytest args...]
set -euo pipefail
cd "$(dirname "$0")/.."
tests/setup.sh --tests
exec .venv/bin/python -m pytest -p no:cacheprovider -ra "$@" tests
