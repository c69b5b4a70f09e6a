"""Tunnelled delivery in a lab that checks source addresses the way a cloud VPC does.

The bridge drops every frame whose IPv4 source is not the sending port's own address (an nft
bridge-family filter, like AWS's source/destination check), and the target has no route to
any assistant: its replies can only be swallowed by a colocated nfreplay-assist. Plain
delivery (the clients' addresses on the wire) then replays nothing, which the first test
asserts so that the lab is known to block spoofing; `--deliver tunnel` replays everything.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator

import pytest

from nfreplay.proto import tcpip, tunnel
from tests.lab.helpers import (
    HTTP_CLIENT, access_log, count_captured, fidelity, host_state, nonzero, paths, redis_cli,
    run_load, run_script, settled_counters, start_capture, vpc_source_check, wait_for,
    wait_target_log, wait_until,
)  # fmt: skip
from tests.lab.servers import REDIS_PORT, Redis
from tests.lab.topology import ADDR, CLIENT_NET, CLIENTS, Lab

pytestmark = [
    pytest.mark.lab,
    pytest.mark.skipif(os.geteuid() != 0, reason="the lab needs root (network namespaces)"),
]

@pytest.fixture
def lab(lab: Lab) -> Lab:
    """The lab, its bridge checking sources like a VPC."""
    vpc_source_check(lab)
    return lab


@pytest.fixture
def collector_lab() -> Iterator[Lab]:
    """The same with a mirror collector."""
    with Lab(collector=True) as lab:
        vpc_source_check(lab)
        yield lab


def spoofed_drops(lab: Lab) -> int:
    out = lab.sh("switch", "nft", "-j", "list", "table", "bridge", "vpc").stdout
    return sum(item["counter"]["packets"] for rule in json.loads(out)["nftables"]
               if "rule" in rule for item in rule["rule"]["expr"] if "counter" in item)


def start_tunnel_replay(lab: Lab, port: int, deliver: str = "tunnel",
                        ) -> tuple[subprocess.Popen[bytes], subprocess.Popen[bytes]]:
    return lab.start_tunnel_replay(port, deliver=deliver)


def stop_tunnel_replay(lab: Lab, assist: subprocess.Popen[bytes],
                       online: subprocess.Popen[bytes]) -> None:
    assert lab.stop_replay(assist, online) == (0, 0), lab.log("online") + lab.log("assist")


def test_plain_delivery_replays_nothing_where_sources_are_checked(lab: Lab) -> None:
    online_log = lab.start_nginx("online")
    target_log = lab.start_nginx("target")
    assist, online = start_tunnel_replay(lab, 80, deliver="link")
    run_load(lab, "plain", short=50, keepalive=0)
    assert len(paths(online_log, "plain")) == 50
    # Every SYN nfreplay-online sent was dropped by the bridge: none reached the target.
    assert wait_until(lambda: settled_counters(lab, 2).get("syns_sent", 0) >= 50, 20)
    assert wait_until(lambda: spoofed_drops(lab) >= 50, 10), spoofed_drops(lab)
    assert paths(target_log, "plain") == []
    stop_tunnel_replay(lab, assist, online)


def test_tunnel_replays_http_redis_and_large_bodies(lab: Lab, servers: Callable) -> None:
    before = host_state(lab)
    online_log = lab.start_nginx("online")
    target_log = lab.start_nginx("target")
    assist, online = start_tunnel_replay(lab, 80)
    sniffer = start_capture(lab)
    run_load(lab, "tun", short=400, keepalive=60, per_conn=5)
    want = set(paths(online_log, "tun"))
    got = wait_for(target_log, "tun", want, timeout=30)
    c = settled_counters(lab)
    share = fidelity("http over a vxlan tunnel, short and keep-alive", len(got & want),
                     len(want))
    assert len(want) == 700 and share >= 99.9, nonzero(c)
    assert c["mss_clamped"] >= 400 and c["packets_sent"] > 0, nonzero(c)
    assert c["sessions_established"] == c["sessions_opened"] == 460, nonzero(c)
    inject = lab.online_status()["extra"]["inject"]
    assert inject["mode"] == "tunnel" and inject["tunnel"] == "vxlan", inject
    # status on the target lists the tunnel device with the rules and routes.
    shown = lab.nfreplay("target", "nfreplay", "status", check=False).stdout
    assert "ip link add nfr" in shown and "--dport 36525" in shown, shown
    # doctor on both hosts, with the replay running.
    online_doc = lab.nfreplay("online", "nfreplay", "doctor", "online", "--deliver", "tunnel",
                              "--assistant", ADDR["target"], "--target",
                              f"{ADDR['target']}:80", check=False)
    assert online_doc.returncode == 0, online_doc.stdout
    assert "ok   vxlan tunnel socket" in online_doc.stdout
    assert f"ok   tunnel peer (the target host) {ADDR['target']}" in online_doc.stdout
    assert "warn vxlan tunnel in a path MTU of 1500 (online.mtu): 50 bytes of outer headers: " \
        "inner packets of at most 1450 bytes" in online_doc.stdout
    target_doc = lab.nfreplay("target", "nfreplay", "doctor", "target", "--clients", CLIENT_NET,
                              "--tunnel", "vxlan", "--tunnel-peers", ADDR["online"],
                              check=False)
    assert target_doc.returncode == 0, target_doc.stdout
    assert "ok   tunnel device nfr" in target_doc.stdout
    assert "ok   rp_filter on nfr" in target_doc.stdout
    assert f"ok   replies to {CLIENT_NET} go into the tunnel device" in target_doc.stdout
    assert spoofed_drops(lab) == 0  # nothing foreign on the wire: the tunnel's outer packets
    assert "delivery: inside a vxlan tunnel to the target host (UDP 36525, 50 bytes of outer " \
        "headers): packets of at most 1450 bytes, SYNs' MSS at most 1410" in lab.log("online")

    # A VXLAN datagram from a host that is not a tunnel peer (the assistant host) is dropped
    # by the target's firewall: its inner SYN never reaches the service.
    syn = tcpip.build(tcpip.ip2int(CLIENTS[0]), tcpip.ip2int(ADDR["target"]), 41000, 80, 7, 0,
                      tcpip.SYN, options=b"\x02\x04\x05\xb4")
    datagram = tunnel.encapsulation("vxlan").prefix + syn
    lab.sh("assist", sys.executable, "-c",
           "import socket, sys; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); "
           "[s.sendto(bytes.fromhex(sys.argv[1]), (sys.argv[2], int(sys.argv[3]))) "
           "for _ in range(5)]", datagram.hex(), ADDR["target"], str(tunnel.DEFAULT_PORT))
    assert wait_until(lambda: "DROP" in dropped_by_target(lab), 10), dropped_by_target(lab)
    assert f"{CLIENTS[0]}:41000" not in lab.sh("target", "ss", "-tan").stdout

    seen = count_captured(lab, sniffer)
    assert seen["target"] == 0 and seen["online"] > 0, seen
    stop_tunnel_replay(lab, assist, online)

    assert host_state(lab) == before


def test_tunnel_replays_redis_and_1mib_bodies_and_sigkill_leaves_nothing(
        lab: Lab, servers: Callable) -> None:
    before = host_state(lab)
    online_db = servers(Redis, "online")
    target_db = servers(Redis, "target")
    assist, online = start_tunnel_replay(lab, REDIS_PORT)
    want = {}
    for i in range(30):
        done = redis_cli(lab, f"SET t:{i} v{i}\nGET t:{i}\n")
        assert done.returncode == 0 and done.stdout.split() == ["OK", f"v{i}"], done
        want[f"t:{i}"] = f"v{i}"
    data = "".join(f"*3\r\n$3\r\nSET\r\n${len(f'p:{i}')}\r\np:{i}\r\n$3\r\nval\r\n"
                   for i in range(100))
    assert "errors: 0, replies: 100" in redis_cli(lab, data, "--pipe").stdout
    want.update({f"p:{i}": "val" for i in range(100)})
    assert online_db.mget(sorted(want)) == want
    assert wait_until(lambda: target_db.mget(sorted(want)) == want, 15), \
        nonzero(settled_counters(lab))
    stop_tunnel_replay(lab, assist, online)

    # 1 MiB downloads and uploads (more than a 256 KiB body) through the tunnel: every
    # full-size client segment is split to fit inside it.
    online_log = lab.start_nginx_files("online")
    target_log = lab.start_nginx_files("target")
    assist, online = start_tunnel_replay(lab, 80)
    summary = run_script(lab, HTTP_CLIENT, "--server", ADDR["online"], "--sources",
                         ",".join(CLIENTS), "--tag", "tb", "--download", "2", "--upload", "2",
                         "--deadline", "60")
    assert len(summary["ok"]) == 8 and not summary["failed"], summary
    seen_online = {u: e for u, e in access_log(online_log).items() if "/tb/" in u}
    got = wait_target_log(target_log, seen_online, timeout=20)
    c = settled_counters(lab)
    assert got == seen_online, (got, seen_online, nonzero(c))
    assert c.get("packets_split", 0) > 0 and not lab.online_status()["extra"]["send_errors"], \
        nonzero(c)

    # SIGKILL on both hosts, then down: nothing of nfreplay is left.
    lab.stop(online, signal.SIGKILL)
    lab.stop(assist, signal.SIGKILL)
    assert host_state(lab) != before  # the tunnel device, its rules and routes are there
    lab.nfreplay("online", "nfreplay-online", "down")
    lab.nfreplay("target", "nfreplay-assist", "down")
    lab.nfreplay("target", "nfreplay", "target", "down")
    assert host_state(lab) == before


def dropped_by_target(lab: Lab) -> str:
    """The target's raw PREROUTING rules with a packet count above zero."""
    out = lab.sh("target", "iptables-nft", "-t", "raw", "-L", "PREROUTING", "-v", "-n",
                 "-x").stdout
    return "\n".join(line for line in out.splitlines()[2:] if line.split()[0] != "0")


@pytest.mark.parametrize("kind", ["fou", "gre", "ipip"])
def test_other_encapsulations_on_the_wire(lab: Lab, kind: str) -> None:
    """FOU, GRE and IPIP leave the online host as the target's kernel expects them (this
    lab's kernel has no such devices, so the target does not take them in: the capture on
    its interface reads them)."""
    from nfreplay.proto.pcapfile import open_capture
    from tests.lab.topology import MARKER_PORT

    encap = tunnel.encapsulation(kind)
    online_log = lab.start_nginx("online")
    lab.start_nginx("target")
    td = lab.start_tcpdump("target", f"outer-{kind}", f"ip proto 47 or ip proto 4 or udp port "
                           f"{tunnel.DEFAULT_PORT} or udp port {MARKER_PORT}",
                           marker_from="online")
    assist, online = lab.start_tunnel_replay(80, "--tunnel", kind, "--mtu", "1400",
                                             tunnel_end=False)
    run_load(lab, f"o{kind}", short=5, keepalive=0)
    assert len(paths(online_log, f"o{kind}")) == 5
    assert wait_until(lambda: settled_counters(lab, 2).get("syns_sent", 0) >= 5, 10)
    lab.stop_tcpdump(td)
    syns = []
    with open_capture(td.pcap) as f:
        for frame in f:
            outer = bytes(frame.ip)
            if outer[9] not in (4, 17, 47) or (outer[9] == 17 and outer[22:24] == b"\x00\x09"):
                continue  # the capture's end marker
            assert tcpip.int2ip(int.from_bytes(outer[12:16], "big")) == ADDR["online"]
            assert outer[9] == encap.ip_proto
            payload = outer[20 + (8 if encap.udp else 0):]
            assert payload.startswith(encap.prefix)
            inner = tcpip.parse(bytearray(payload[len(encap.prefix):]))
            assert tcpip.int2ip(inner.src) in CLIENTS and inner.dport == 80
            if inner.flags & tcpip.SYN:
                syns.append(inner)
    assert len(syns) >= 5
    # The SYN's MSS leaves room for the outer headers in the 1400-byte path.
    assert {tcpip.syn_options(s)[0] for s in syns} == {1400 - encap.overhead - 40}
    assert lab.stop_replay(assist, online) == (0, 0)


def test_mirror_collector_delivers_through_the_tunnel(collector_lab: Lab) -> None:
    """The agentless cloud deployment: production's packets reach the collector only as the
    kernel's VXLAN copies, and the collector, which may not send foreign sources either,
    replays them through the tunnel to the target's colocated assist."""
    lab = collector_lab
    before = host_state(lab)
    online_log = lab.start_nginx("online")
    target_log = lab.start_nginx("target")
    lab.mirror(vni=42)
    assist, online = lab.start_tunnel_replay(80, "--input", "vxlan", host="collector")
    sniffer = start_capture(lab)
    run_load(lab, "coll", short=300, keepalive=40, per_conn=5)
    want = set(paths(online_log, "coll"))
    got = wait_for(target_log, "coll", want, timeout=30)
    share = fidelity("mirror collector through a vxlan tunnel", len(got & want), len(want))
    c = lab.online_status("collector").get("counters", {})
    assert len(want) == 500 and share >= 99.9, nonzero(c)
    assert sorted(paths(target_log, "coll")) == sorted(set(paths(target_log, "coll")))
    assert spoofed_drops(lab) == 0
    seen = count_captured(lab, sniffer)
    assert seen["target"] == 0 and seen["online"] > 0, seen
    assert lab.stop_replay(assist, online) == (0, 0), lab.log("collector-online")
    lab.unmirror()
    assert host_state(lab) == before
