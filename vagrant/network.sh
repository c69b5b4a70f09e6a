#!/usr/bin/env bash
# Put this VM on the lab segment: ADDR/PREFIX on the lab NIC plus the lab's routes,
# applied now and persisted (ifupdown, or systemd-networkd if that is what the box
# uses), so that network-online.target means "lab address configured" for the
# nfreplay units. Idempotent.
#
# usage: network.sh ADDR/PREFIX [ROUTE ...]
#   ROUTE is NET             an on-link route to NET on the lab NIC (the client's
#                            /24 and the servers' /24 share one L2 segment), or
#         blackhole:NET      a fail-closed last resort for NET (metric 4000): any
#                            more specific or lower-metric route wins over it.
#   The lab NIC is the one NIC that is neither lo nor the default route's
#   (Vagrant's management NIC); set NFR_LAB_IFACE to name it instead.
set -euo pipefail

addr=${1:?usage: network.sh ADDR/PREFIX [ROUTE ...]}
shift
iface=${NFR_LAB_IFACE:-}

if [[ -z $iface ]]; then
    mgmt=$(ip -o -4 route show default | awk '{for (i = 1; i < NF; i++) if ($i == "dev") print $(i + 1)}' | head -n1)
    mapfile -t candidates < <(ip -o link show | awk -F': ' '{sub(/@.*/, "", $2); print $2}' |
        grep -v -x -e lo -e "${mgmt:-lo}")
    if [[ ${#candidates[@]} -ne 1 ]]; then
        echo "network.sh: cannot tell the lab NIC (candidates: ${candidates[*]:-none}); set NFR_LAB_IFACE" >&2
        exit 1
    fi
    iface=${candidates[0]}
fi

routes=()
for r in "$@"; do
    case $r in
        blackhole:*) routes+=("blackhole ${r#blackhole:} metric 4000") ;;
        *) routes+=("$r dev $iface scope link") ;;
    esac
done

echo "network.sh: $iface = $addr"
ip link set dev "$iface" up
ip -4 addr flush dev "$iface" scope global
ip -4 addr add "$addr" dev "$iface"
for r in "${routes[@]}"; do
    echo "network.sh: route $r"
    # shellcheck disable=SC2086  # $r is a route spec: split it into words
    ip -4 route replace $r
done

# The same at boot.
if command -v ifup >/dev/null 2>&1 && [[ -f /etc/network/interfaces ]]; then
    grep -q '^source /etc/network/interfaces.d/' /etc/network/interfaces ||
        echo 'source /etc/network/interfaces.d/*' >>/etc/network/interfaces
    mkdir -p /etc/network/interfaces.d
    {
        echo "# written by nfreplay vagrant/network.sh"
        echo "auto $iface"
        echo "iface $iface inet static"
        echo "    address $addr"
        for r in "${routes[@]}"; do echo "    up ip -4 route replace $r"; done
    } >/etc/network/interfaces.d/nfreplay-lab
elif systemctl is-enabled --quiet systemd-networkd 2>/dev/null; then
    mkdir -p /etc/systemd/network
    {
        echo "# written by nfreplay vagrant/network.sh"
        printf '[Match]\nName=%s\n\n[Network]\nAddress=%s\n' "$iface" "$addr"
        for r in "$@"; do
            case $r in
                blackhole:*) printf '\n[Route]\nType=blackhole\nDestination=%s\nMetric=4000\n' "${r#blackhole:}" ;;
                *) printf '\n[Route]\nDestination=%s\nScope=link\n' "$r" ;;
            esac
        done
    } >/etc/systemd/network/60-nfreplay-lab.network
else
    echo "network.sh: neither ifupdown nor systemd-networkd: the lab address will not survive a reboot" >&2
fi
