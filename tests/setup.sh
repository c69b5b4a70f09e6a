#!/usr/bin/env bash
# Install everything the demo and the test suite need, on Debian 12, as root. Idempotent:
# apt runs only for what is missing; the venv (.venv) is created once and nfreplay is
# installed into it in editable mode (again each time: that rebuilds the compiled hot path).
#
# usage: tests/setup.sh [--tests]     --tests adds what only the test suite uses (vagrant,
#                                     systemd-analyze, the lab's redis, postgresql, vsftpd,
#                                     chromium for the HTML report test, podman with runc,
#                                     catatonit for its pods' pause image, mmdebstrap for the
#                                     base image)
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(
    python3 python3-venv python3-dev gcc libc6-dev
    libnetfilter-queue-dev        # NetfilterQueue compiles against it
    iptables nftables iproute2 procps kmod
    tcpdump ethtool               # the lab captures in the client namespace
    nginx-light                   # the service replayed in the lab
)
[[ ${1:-} == --tests ]] && packages+=(vagrant systemd redis-server postgresql vsftpd
    chromium                       # renders nfreplay compare's HTML report in a unit test
    podman runc catatonit mmdebstrap)  # the image and the pod (tests/lab/test_containers.py)
# The lab starts its own servers inside network namespaces; none may run on the host.
services=(nginx redis-server postgresql vsftpd)

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
    if command -v systemctl >/dev/null && [[ -d /run/systemd/system ]]; then
        systemctl disable --now "${services[@]}" >/dev/null 2>&1 || true
    fi
    # postgresql's package creates a default cluster; the lab makes private ones.
    if [[ " ${missing[*]} " == *" postgresql "* ]] && command -v pg_dropcluster >/dev/null; then
        pg_lsclusters -h 2>/dev/null | while read -r ver name _; do
            pg_dropcluster --stop "$ver" "$name" || true
        done
    fi
fi

[[ -x .venv/bin/python ]] || python3 -m venv .venv
# Editable, with the hot path compiled into the tree (setup.py: gcc and python3-dev are above);
# pure Python if it cannot be built (`pip install -v` says why) or with NFREPLAY_PURE=1.
.venv/bin/pip install -q --disable-pip-version-check -e '.[test]'
echo "tests/setup.sh: $(.venv/bin/nfreplay --version)"
