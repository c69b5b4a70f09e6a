#!/usr/bin/env bash
# The demo: install, build the four-namespace lab, replay a short burst of live HTTP traffic
# from the online nginx to the target nginx, print `nfreplay status` on each host, tear
# everything down. Needs root.
set -euo pipefail
cd "$(dirname "$0")/../.."
tests/setup.sh
exec .venv/bin/python -m tests.lab.demo "$@"
