#!/usr/bin/env bash
# The assistant host: ip_forward = 0 (it is the black hole the target's replies are
# routed into), /etc/nfreplay/nfreplay.toml with [assist], nfreplay-assist.service.
# Addresses come from the Vagrantfile (NFR_* variables). Idempotent.
set -euo pipefail
for v in NFR_ASSISTANT_IP NFR_ONLINE_IP NFR_TARGET_IP NFR_CLIENT_NET NFR_SERVICE_PORT NFR_CONTROL_PORT; do
    [[ -n ${!v:-} ]] || { echo "provision-assistant.sh: $v is not set (run it from the Vagrantfile)" >&2; exit 1; }
done

cat >/etc/sysctl.d/60-nfreplay-lab.conf <<CONF
# nfreplay lab (vagrant/provision-assistant.sh): never forward the target's replies
net.ipv4.ip_forward = 0
CONF
sysctl -q -p /etc/sysctl.d/60-nfreplay-lab.conf

install -d -m 0755 /etc/nfreplay
cat >/etc/nfreplay/nfreplay.toml <<CONF
# nfreplay lab: assistant host (written by vagrant/provision-assistant.sh)
[general]
instance = "default"
state_dir = "/run/nfreplay"
backend = "auto"
log_level = "info"

[assist]
target = "$NFR_TARGET_IP:$NFR_SERVICE_PORT"
clients = ["$NFR_CLIENT_NET"]
mode = "assistant"
# the lab address only: nfreplay-online connects here
listen = "$NFR_ASSISTANT_IP:$NFR_CONTROL_PORT"
# only the online host may connect (never the target: it runs the build under test)
online = ["$NFR_ONLINE_IP"]
queue = 0
passlist = []
fix_ip_forward = false
CONF

systemctl enable nfreplay-assist.service
# restart: a re-provision applies a changed config.
systemctl restart nfreplay-assist.service
sleep 2
systemctl --no-pager --lines=5 status nfreplay-assist.service || true
