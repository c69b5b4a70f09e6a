#!/usr/bin/env bash
# Install nfreplay on a lab VM: apt dependencies, a venv in /opt/nfreplay with
# nfreplay from the repository (the synced folder), the commands linked into
# /usr/local/bin and the systemd units into /etc/systemd/system (not enabled:
# vagrant/provision-<role>.sh enables the one its role runs).
#
# usage: install.sh [SRC]     SRC = the repository, default /vagrant
# Idempotent: running it again reinstalls nfreplay from SRC.
set -euo pipefail

src=${1:-/vagrant}
prefix=/opt/nfreplay
[[ -f $src/pyproject.toml ]] || { echo "install.sh: no pyproject.toml in $src" >&2; exit 1; }

export DEBIAN_FRONTEND=noninteractive
apt-get update -q
# libnetfilter-queue-dev: NetfilterQueue compiles against it. libpcap-dev: pcapy-ng
# has binary wheels for this Python, but builds from source where it has none. gcc,
# libc6-dev and python3-dev also build nfreplay's compiled hot path (setup.py).
apt-get install -y -q --no-install-recommends \
    python3 python3-venv python3-dev gcc libc6-dev \
    libnetfilter-queue-dev libpcap-dev iptables nftables tcpdump ethtool

# Build from a copy: pip's in-tree build writes build/ and *.egg-info into the
# source, which is the synced folder.
build=$(mktemp -d)
trap 'rm -rf "$build"' EXIT
tar -C "$src" --exclude=./.git --exclude=./.venv --exclude=./.vagrant --exclude=./build \
    --exclude='*.egg-info' --exclude=__pycache__ --exclude='*.so' -cf - . | tar -C "$build" -xf -

[[ -x $prefix/bin/python ]] || python3 -m venv "$prefix"
# The hot path compiles (gcc, python3-dev); were it not possible, pip -v would say why and
# nfreplay would run as pure Python (the last line says which).
"$prefix/bin/pip" install -q "$build"

for cmd in nfreplay nfreplay-online nfreplay-assist; do
    ln -sf "$prefix/bin/$cmd" "/usr/local/bin/$cmd"
done

install -d -m 0755 /etc/nfreplay
install -m 0644 "$src"/systemd/*.service /etc/systemd/system/
systemctl daemon-reload
echo "install.sh: $("$prefix/bin/nfreplay" --version) in $prefix"
