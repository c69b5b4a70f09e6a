#!/usr/bin/env bash
# The whole test suite: unit tests (no root) and the lab (root: network namespaces, real
# nginx, real daemons). Installs what it needs first (tests/setup.sh).
#
# usage: tests/run.sh [pytest args...]     (with args: only the pure-Python pass, those tests)
set -euo pipefail
cd "$(dirname "$0")/.."
tests/setup.sh --tests
# Undefined names, unused imports and syntax errors fail the run before any test does.
.venv/bin/ruff check --quiet --select F,E9 nfreplay tests
# Types: the package stays mypy-clean (pyproject.toml [tool.mypy]).
.venv/bin/mypy
# The tree must hold no compiled modules for the pure-Python pass (a .so shadows its .py).
clean_compiled() { find nfreplay -name '*.so' -delete; rm -rf build; }
clean_compiled
.venv/bin/python -m pytest -p no:cacheprovider -ra "$@" tests
(($#)) && exit 0
# The optional compiled hot path (setup.py, mypyc): built in place, the unit tests and the
# replay lab run against it, then the tree is pure Python again.
trap clean_compiled EXIT
NFREPLAY_COMPILE=1 .venv/bin/python setup.py -q build_ext --inplace
.venv/bin/python -c 'from nfreplay.cli.reporting import compiled; assert compiled(), "not compiled"'
.venv/bin/python -m pytest -p no:cacheprovider -ra tests/unit tests/lab/test_replay.py \
    tests/lab/test_protocols.py
