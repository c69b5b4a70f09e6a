#!/usr/bin/env bash
# The whole test suite: unit tests (no root) and the lab (root: network namespaces, real
# nginx, real daemons), first on the default install (the hot path compiled, setup.py), then
# the unit tests and the replay lab on pure Python. Installs what it needs first
# (tests/setup.sh).
#
# usage: tests/run.sh [pytest args...]     with args: only the compiled pass, those tests
#        NFREPLAY_PURE=1 tests/run.sh [...]  one pass, on a pure install: all tests, or those
set -euo pipefail
cd "$(dirname "$0")/.."
pure=${NFREPLAY_PURE:-0}
tests/setup.sh --tests
# Undefined names, unused imports and syntax errors fail the run before any test does.
.venv/bin/ruff check --quiet --select F,E9 nfreplay tests setup.py
# Types: the package stays mypy-clean (pyproject.toml [tool.mypy]).
.venv/bin/mypy
runs() {  # runs compiled|pure: fails unless the hot path runs that way
    .venv/bin/python -c "import sys; from nfreplay.cli.reporting import compiled
if compiled() != (sys.argv[1] == 'compiled'):
    sys.exit(f'tests/run.sh: the hot path should run {sys.argv[1]} and does not')" "$1"
}
if [[ $pure == 1 ]]; then runs pure; else runs compiled; fi
.venv/bin/python -m pytest -p no:cacheprovider -ra "$@"  # no paths: testpaths (tests)
if (($#)) || [[ $pure == 1 ]]; then exit 0; fi

# Pure Python, as NFREPLAY_PURE=1 or a host without a compiler installs it: the compiled
# modules set aside (a .so shadows its .py), put back at exit.
aside=$(mktemp -d)
restore() {
    (cd "$aside" && find nfreplay -name '*.so' -print0) |
        while IFS= read -r -d '' f; do mv "$aside/$f" "$f"; done
    rm -rf "$aside"
}
trap restore EXIT
find nfreplay -name '*.so' -print0 | while IFS= read -r -d '' f; do
    mkdir -p "$aside/$(dirname "$f")" && mv "$f" "$aside/$f"
done
runs pure
.venv/bin/python -m pytest -p no:cacheprovider -ra tests/unit tests/lab/test_replay.py \
    tests/lab/test_protocols.py
