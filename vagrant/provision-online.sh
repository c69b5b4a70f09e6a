#!/usr/bin/env bash
# The online host: the production service (nginx, index page "online"),
# /etc/nfreplay/nfreplay.toml with [online], nfreplay-online.service.
# Addresses come from the Vagrantfile (NFR_* variables). Idempotent.
set -euo pipefail
for v in NFR_ONLINE_IP NFR_TARGET_IP NFR_ASSISTANT_IP NFR_SERVICE_PORT NFR_CONTROL_PORT; do
    [[ -n ${!v:-} ]] || { echo "provision-online.sh: $v is not set (run it from the Vagrantfile)" >&2; exit 1; }
done
export DEBIAN_FRONTEND=noninteractive
iface=$(ip -o -4 addr show | awk -v ip="$NFR_ONLINE_IP" '{split($4, a, "/"); if (a[1] == ip) print $2}' | head -n1)
[[ -n $iface ]] || { echo "provision-online.sh: no interface has $NFR_ONLINE_IP (vagrant/network.sh ran?)" >&2; exit 1; }

apt-get install -y -q --no-install-recommends nginx
printf '<!doctype html>\n<title>online</title>\n<p>nfreplay lab: online</p>\n' >/var/www/html/index.html
systemctl enable --now nginx

install -d -m 0755 /etc/nfreplay
cat >/etc/nfreplay/nfreplay.toml <<CONF
# nfreplay lab: online host (written by vagrant/provision-online.sh)
[general]
instance = "default"
state_dir = "/run/nfreplay"
backend = "auto"
log_level = "info"

[online]
# what clients connect to: captured on the lab NIC
service = "$NFR_ONLINE_IP:$NFR_SERVICE_PORT"
target = "$NFR_TARGET_IP:$NFR_SERVICE_PORT"
assistants = ["$NFR_ASSISTANT_IP:$NFR_CONTROL_PORT"]
interface = "$iface"
CONF

# nfreplay-online connects to the assistant as it starts: give the assistant (a
# VM that may still be provisioning) up to 5 minutes to listen, then start anyway
# (Restart=on-failure retries).
for _ in $(seq 60); do
    if timeout 2 bash -c "exec 3<>/dev/tcp/$NFR_ASSISTANT_IP/$NFR_CONTROL_PORT" 2>/dev/null; then
        echo "provision-online.sh: assistant listening on $NFR_ASSISTANT_IP:$NFR_CONTROL_PORT"
        break
    fi
    sleep 5
done

systemctl enable nfreplay-online.service
# reset-failed: a unit that hit its start limit while the assistant was away.
systemctl reset-failed nfreplay-online.service 2>/dev/null || true
systemctl restart nfreplay-online.service
sleep 2
systemctl --no-pager --lines=5 status nfreplay-online.service || true
