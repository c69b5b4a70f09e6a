"""The mirror input (issue 17 part 2) in the lab: production's packets reach a collector only
as VXLAN copies made by the kernel (`tc` mirred into a `vxlan` device on the online host's
eth0, both directions), nfreplay-online runs only in the collector and replays to the target
through the usual assistant.

Asserts on the target's own access log (every request once), on the client namespace's
capture (no reply from the target), on the mirror's counters (every datagram accounted for),
and that garbage on the mirror port is counted, never replayed, never fatal.
"""

from __future__ import annotations

import collections
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from nfreplay.proto import tcpip
from tests.lab.helpers import count_captured, paths, run_load, start_capture, wait_for
from tests.lab.topology import ADDR, BIN, CLIENT_NET, CLIENTS, COLLECTOR, VXLAN_PORT, Lab

pytestmark = [
    pytest.mark.lab,
    pytest.mark.skipif(os.geteuid() != 0, reason="the lab needs root (network namespaces)"),
]

VNI = 42


@pytest.fixture
def lab():
    with Lab(collector=True) as lab:
        yield lab


def start_mirror_replay(lab: Lab, *online_extra: str):  # type: ignore[no-untyped-def]
    """The target's route, nfreplay-assist accepting the collector, nfreplay-online in the
    collector on the mirror input. Returns (assist, online)."""
    lab.nfreplay("target", "nfreplay", "target", "up", "--clients", CLIENT_NET,
                 "--via", ADDR["assist"])
    assist = lab.start_assist("--online", COLLECTOR)
    online = lab.start_online("--input", "vxlan", "--vxlan-vni", str(VNI), *online_extra,
                              host="collector")
    return assist, online


def counters(lab: Lab) -> dict[str, int]:
    return dict(lab.online_status("collector").get("counters") or {})


def settled(lab: Lab, timeout: float = 20.0) -> dict[str, int]:
    """The collector's counters once the mirror is quiet and every session ended (snapshots
    are taken once a second: two equal ones in a row, a second apart)."""
    deadline = time.monotonic() + timeout
    last: dict[str, int] = {}
    while time.monotonic() < deadline:
        now = counters(lab)
        if now and now == last and now.get("sessions_live", 1) == 0:
            return now
        last = now
        time.sleep(1.2)
    raise AssertionError(f"counters never settled: {last}")


def accounted(c: dict[str, int]) -> None:
    """Every mirrored datagram was handed on as a captured packet or counted under why not."""
    parts = ("packets_captured", "mirror_bad", "mirror_replies", "mirror_other",
             "mirror_duplicates")
    assert c["mirror_packets"] == sum(c[k] for k in parts), {k: c[k] for k in
                                                              ("mirror_packets", *parts)}


def replay_through_the_mirror(lab: Lab, tag: str, copies: int) -> dict[str, int]:
    online_log = lab.start_nginx("online")
    target_log = lab.start_nginx("target")
    before = lab.firewall_and_routes()
    lab.mirror(copies=copies, vni=VNI)
    assist, online = start_mirror_replay(lab)
    sniffer = start_capture(lab)

    summary = run_load(lab, tag, short=1000, keepalive=200, per_conn=5)
    assert summary["ok"] == 2000

    online_paths = paths(online_log, tag)
    assert len(online_paths) == len(set(online_paths)) == 2000
    got = wait_for(target_log, tag, set(online_paths), timeout=60)
    c = settled(lab)
    replayed = paths(target_log, tag)
    # (a) >= 99.9 % of the requests, and none twice, however often the mirror copied it.
    missing = set(online_paths) - got
    assert len(missing) <= 2, (f"{len(missing)} requests never reached the target, e.g. "
                               f"{sorted(missing)[:5]}; counters: "
                               f"{ {k: v for k, v in c.items() if v} }")
    twice = {p: n for p, n in collections.Counter(replayed).items() if n > 1}
    assert not twice, f"replayed more than once: {list(twice.items())[:5]}"
    # (b) no reply of the target reached the client namespace.
    seen = count_captured(lab, sniffer)
    assert seen["target"] == 0 and seen["online"] > 0, seen
    # (c) the mirror's counters: every datagram accounted for; production's replies seen and
    # not replayed; nothing undecodable on a clean mirror.
    accounted(c)
    assert c["mirror_bad"] == 0 and c["mirror_replies"] > 0 and c["mirror_bytes"] > 0
    assert c["sessions_completed"] >= 1000 and c["sessions_handshake_failed"] == 0, c
    st = lab.online_status("collector")
    assert st["extra"]["capture"]["interface"] == f"vxlan:0.0.0.0:{VXLAN_PORT}"
    assert st["extra"]["capture"]["dropped"] == 0

    assert lab.stop(online) == 0, lab.log("collector-online")
    assert lab.stop(assist) == 0, lab.log("assist")
    lab.nfreplay("target", "nfreplay", "target", "down")
    lab.unmirror()
    assert lab.firewall_and_routes() == before
    log = lab.log("collector-online")
    assert "VXLAN mirror on udp 0.0.0.0:4789 (VNI 42)" in log and "mirrored " in log, log
    return c


def test_mirror_input_replays_every_request_from_a_collector(lab: Lab) -> None:
    c = replay_through_the_mirror(lab, "mirror", copies=1)
    assert c["mirror_duplicates"] == 0
    # nfreplay-online never ran on the online host: nothing of it there.
    assert not list(Path(lab.state_dir("online")).glob("online-*"))


def test_a_mirror_copying_every_packet_twice_replays_each_request_once(lab: Lab) -> None:
    c = replay_through_the_mirror(lab, "mirror2", copies=2)
    # Each client packet arrived twice, back to back: one copy replayed, one counted.
    assert c["mirror_duplicates"] == c["packets_captured"] > 0, c
    assert c["client_duplicates"] == 0, c


def bad_datagrams() -> list[bytes]:
    """Garbage, cut-short datagrams and a valid client SYN under another VNI: each one is
    mirror_bad."""
    syn = bytes(tcpip.build(tcpip.ip2int(CLIENTS[0]), tcpip.ip2int(ADDR["online"]), 41000,
                            80, 1000, 0, tcpip.SYN))
    frame = bytes(12) + b"\x08\x00" + syn

    def vx(inner: bytes, vni: int = VNI, flags: int = 0x08) -> bytes:
        return bytes([flags, 0, 0, 0]) + vni.to_bytes(3, "big") + b"\0" + inner

    return [
        b"",  # an empty datagram
        b"\x00 not a VXLAN datagram at all" * 8,
        b"\x08\0\0\0\0\0",  # a VXLAN header cut short
        vx(frame, flags=0x00),  # no I flag
        vx(frame[:20]),  # the inner frame cut in its IP header
        vx(frame[:-4]),  # the inner packet shorter than its tot_len
        vx(frame, vni=7),  # another VNI
        vx(frame, vni=VNI + 1),
    ]


def test_garbage_on_the_mirror_port_is_counted_never_replayed(lab: Lab) -> None:
    """Bad datagrams (from any host that reaches the port) are mirror_bad; none opens a
    session; the daemon goes on and replays a real mirror afterwards. `doctor online` sees
    the mirror's VNI."""
    online_log = lab.start_nginx("online")
    target_log = lab.start_nginx("target")
    lab.mirror(copies=1, vni=VNI)
    # doctor, before `up`: the port is free, and while a little traffic runs VNI 42 arrives.
    doctor = subprocess.Popen(
        ["ip", "netns", "exec", lab.ns["collector"], str(BIN / "nfreplay"), "doctor",
         "online", "--input", "vxlan", "--vxlan-vni", str(VNI), "--assistant", ADDR["assist"]],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        time.sleep(0.5)  # doctor binds first (it listens for 3 s)
        run_load(lab, "doctor", short=20, keepalive=0)
        out = doctor.communicate(timeout=30)[0]
    finally:
        if doctor.poll() is None:
            doctor.kill()
            doctor.wait()
    assert f"ok   mirror socket udp 0.0.0.0:{VXLAN_PORT}: free" in out, out
    assert f"ok   VNI {VNI} seen" in out, out

    assist, online = start_mirror_replay(lab)
    bad = bad_datagrams()
    sender = ("import socket, sys, json\n"
              "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
              "for d in json.loads(sys.stdin.read()):\n"
              "    s.sendto(bytes.fromhex(d), (sys.argv[1], int(sys.argv[2])))\n")
    subprocess.run(["ip", "netns", "exec", lab.ns["client"], sys.executable, "-c", sender,
                    COLLECTOR, str(VXLAN_PORT)], input=json.dumps([d.hex() for d in bad]),
                   text=True, check=True, timeout=30)
    deadline = time.monotonic() + 10
    while counters(lab).get("mirror_bad", 0) < len(bad) and time.monotonic() < deadline:
        time.sleep(0.2)
    c = counters(lab)
    # (The mirror also carries the online host's other frames, ARP and the like:
    # mirror_other.)
    assert c["mirror_bad"] == len(bad), {k: v for k, v in c.items() if v}
    accounted(c)
    assert c["sessions_opened"] == 0 and c["packets_sent"] == 0 and c["packets_captured"] == 0
    assert online.poll() is None, lab.log("collector-online")

    # The same daemon then replays a real mirror.
    summary = run_load(lab, "afterbad", short=50, keepalive=10, per_conn=3)
    assert summary["ok"] == 80
    want = set(paths(online_log, "afterbad"))
    assert wait_for(target_log, "afterbad", want, timeout=30) == want
    c = settled(lab)
    accounted(c)
    assert c["mirror_bad"] == len(bad), c
    assert not paths(target_log, "doctor")  # the doctor's traffic came before the replay
    assert lab.stop(online) == 0, lab.log("collector-online")
    assert "Traceback" not in lab.log("collector-online")
    lab.stop(assist)
    lab.nfreplay("target", "nfreplay", "target", "down")


def test_the_mirror_port_in_use_is_one_line_and_exit_3(lab: Lab) -> None:
    """A vxlan device with the mirror's port in the collector's namespace holds it: `up`
    says so in one line, no traceback, exit code 3."""
    lab.sh("collector", "ip", "link", "add", "vxk0", "type", "vxlan", "id", "5", "dstport",
           str(VXLAN_PORT), "dev", "eth0")
    lab.sh("collector", "ip", "link", "set", "vxk0", "up")
    done = lab.nfreplay("collector", "nfreplay-online", "up", "--input", "vxlan", "--service",
                        f"{ADDR['online']}:80", "--target", f"{ADDR['target']}:80",
                        "--assistant", ADDR["assist"], check=False, timeout=30)
    assert done.returncode == 3, (done.returncode, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "mirror input: cannot listen on udp 0.0.0.0:4789" in lines[0], \
        done.stderr
    assert "Traceback" not in done.stderr
