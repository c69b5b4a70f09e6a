#!/usr/bin/env bash
# The client host: curl, tcpdump and /usr/local/bin/nfreplay-load, a bounded request loop
# against the online host's service. Runs no nfreplay. Addresses come from the
# Vagrantfile (NFR_* variables). Idempotent.
set -euo pipefail
for v in NFR_ONLINE_IP NFR_SERVICE_PORT; do
    [[ -n ${!v:-} ]] || { echo "provision-client.sh: $v is not set (run it from the Vagrantfile)" >&2; exit 1; }
done
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q --no-install-recommends curl tcpdump

cat >/usr/local/bin/nfreplay-load <<SCRIPT
#!/bin/sh
# nfreplay lab load (written by vagrant/provision-client.sh).
# usage: nfreplay-load [COUNT [URL]]
#   COUNT requests (1..10000, default 100), one after another, 0.1 s apart, each
#   with a 5 s limit, to URL (default http://$NFR_ONLINE_IP:$NFR_SERVICE_PORT/).
#   Prints how many succeeded; exits 1 if any failed.
count=\${1:-100}
url=\${2:-http://$NFR_ONLINE_IP:$NFR_SERVICE_PORT/}
case \$count in
    ''|*[!0-9]*) echo "nfreplay-load: COUNT must be a number" >&2; exit 2 ;;
esac
if [ "\$count" -lt 1 ] || [ "\$count" -gt 10000 ]; then
    echo "nfreplay-load: COUNT must be 1..10000" >&2; exit 2
fi
ok=0 failed=0 i=0
while [ "\$i" -lt "\$count" ]; do
    if curl -fsS -o /dev/null --max-time 5 "\$url"; then ok=\$((ok + 1)); else failed=\$((failed + 1)); fi
    i=\$((i + 1))
    sleep 0.1
done
echo "nfreplay-load: \$count requests to \$url: \$ok ok, \$failed failed"
[ "\$failed" -eq 0 ]
SCRIPT
chmod 0755 /usr/local/bin/nfreplay-load
echo "provision-client.sh: run 'nfreplay-load 100' (vagrant ssh client -c 'nfreplay-load 100')"
