#!/usr/bin/env bash
# The whole test suite: unit tests (no root) and the lab (root: network namespaces, real
# nginx, real daemons). Installs what it needs first (tests/setup.sh).
#
# usage: tests/run.sh [pytest args...]
set -euo pipefail
cd "$(dirname "$0")/.."
tests/setup.sh --tests
# Undefined names, unused imports and syntax errors fail the run before any test does.
.venv/bin/ruff check --quiet --select F,E9 nfreplay tests
# Types: the package stays mypy-clean (pyproject.toml [tool.mypy]).
.venv/bin/mypy
exec .venv/bin/python -m pytest -p no:cacheprovider -ra "$@" tests
