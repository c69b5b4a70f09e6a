#!/usr/bin/env bash
# Install everything the demo and the test suite need, on Debian 12, as root. Idempotent:
# apt runs only for what is missing; the venv (.venv) is created once and nfreplay is
# installed into it in editable mode.
#
# usage: tests/setup.sh [--tests]     --tests adds what only the test suite uses (vagrant)
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(
    python3 python3-venv python3-dev gcc libc6-dev
    libnetfilter-queue-dev        # NetfilterQueue compiles against it
    iptables nftables iproute2 procps kmod
    tcpdump ethtool               # the lab captures in the client namespace
    nginx-light                   # the service replayed in the lab
)
[[ ${1:-} == --tests ]] && packages+=(vagrant systemd)   # vagrant validate, systemd-analyze

missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
    export DEBIAN_FRONTEND=noninteractive
    # Packages must not start their services (nginx would take port 80 on the host):
    # the lab runs its own nginx inside network namespaces.
    policy=/usr/sbin/policy-rc.d
    [[ -e $policy ]] || { printf '#!/bin/sh\nexit 101\n' > $policy; chmod +x $policy; trap 'rm -f $policy' EXIT; }
    apt-get update -q
    apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

[[ -x .venv/bin/python ]] || python3 -m venv .venv
.venv/bin/pip install -q --disable-pip-version-check -e '.[test]'
