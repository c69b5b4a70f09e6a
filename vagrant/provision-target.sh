#!/usr/bin/env bash
# The target host: the service under test (nginx, index page "target"), loose
# rp_filter (it receives packets from client addresses that it routes back via the
# assistant), /etc/nfreplay/nfreplay.toml with [target], nfreplay-target.service.
# Addresses come from the Vagrantfile (NFR_* variables). Idempotent.
set -euo pipefail
for v in NFR_TARGET_IP NFR_ASSISTANT_IP NFR_CLIENT_NET; do
    [[ -n ${!v:-} ]] || { echo "provision-target.sh: $v is not set (run it from the Vagrantfile)" >&2; exit 1; }
done
export DEBIAN_FRONTEND=noninteractive
iface=$(ip -o -4 addr show | awk -v ip="$NFR_TARGET_IP" '{split($4, a, "/"); if (a[1] == ip) print $2}' | head -n1)
[[ -n $iface ]] || { echo "provision-target.sh: no interface has $NFR_TARGET_IP (vagrant/network.sh ran?)" >&2; exit 1; }

apt-get install -y -q --no-install-recommends nginx
printf '<!doctype html>\n<title>target</title>\n<p>nfreplay lab: target</p>\n' >/var/www/html/index.html
systemctl enable --now nginx

# Loose reverse-path filtering (2); the kernel uses the max of "all" and the NIC's.
cat >/etc/sysctl.d/60-nfreplay-lab.conf <<CONF
# nfreplay lab (vagrant/provision-target.sh): loose reverse-path filter
net.ipv4.conf.all.rp_filter = 2
net.ipv4.conf.default.rp_filter = 2
net.ipv4.conf.$iface.rp_filter = 2
CONF
sysctl -q -p /etc/sysctl.d/60-nfreplay-lab.conf

install -d -m 0755 /etc/nfreplay
cat >/etc/nfreplay/nfreplay.toml <<CONF
# nfreplay lab: target host (written by vagrant/provision-target.sh)
[general]
instance = "default"
state_dir = "/run/nfreplay"
backend = "auto"
log_level = "info"

[target]
# replies to these clients go via the assistant, never to the clients
clients = ["$NFR_CLIENT_NET"]
via = "$NFR_ASSISTANT_IP"
CONF

systemctl enable nfreplay-target.service
# restart: a re-provision applies a changed config (stop runs `target down`).
systemctl restart nfreplay-target.service
systemctl --no-pager --lines=0 status nfreplay-target.service || true
ip -4 route show "$NFR_CLIENT_NET"
