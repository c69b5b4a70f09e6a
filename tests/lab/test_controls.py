"""Replay controls in the lab: offline replay of a recorded capture at several speeds,
amplification with a client pool, sampling, and a TOA-carrying capture filtered by the real
client address. Each test asserts on the target nginx's own access log."""

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
from nfreplay.proto.pcapfile import LINKTYPE_RAW, PcapWriter, open_capture
from nfreplay.session.sampling import Sampler
from nfreplay.proto.tcpip import ACK, FIN, PSH, SYN
from tests.lab.topology import ADDR, CLIENT_NET, CLIENTS, MARKER_PORT, Lab

pytestmark = [
    pytest.mark.lab,
    pytest.mark.skipif(os.geteuid() != 0, reason="the lab needs root (network namespaces)"),
]

LOAD = Path(__file__).with_name("load.py")
POOL_NET = "198.18.4.0/24"


def record(lab: Lab, tag: str, short: int, keepalive: int, gap: float = 0.0) -> Path:
    """Run a load against the online nginx while tcpdump records what clients send it."""
    # A 64 MiB buffer: with the default one, tcpdump drops packets of a 2000-connection burst
    # on this 2-core VM, and a session whose FIN was never recorded stays open until the tail.
    # (The end marker is UDP: the replay reads only TCP to the service.)
    td = lab.start_tcpdump("online", f"record-{tag}",
                           f"(tcp and dst port 80 and dst host {ADDR['online']}) or "
                           f"(udp and dst port {MARKER_PORT})", "client", "-B", "65536")
    done = subprocess.run(
        ["ip", "netns", "exec", lab.ns["client"], sys.executable, str(LOAD), "--server",
         ADDR["online"], "--sources", ",".join(CLIENTS), "--tag", tag, "--short", str(short),
         "--keepalive", str(keepalive), "--gap", str(gap), "--deadline", "120"],
        capture_output=True, text=True, timeout=180)
    assert json.loads(done.stdout)["failed"] == 0
    lab.stop_tcpdump(td)
    log = lab.log(f"record-{tag}")
    assert "\n0 packets dropped by kernel" in "\n" + log, log
    return td.pcap


def replay(lab: Lab, pcap: Path, *args: str) -> tuple[subprocess.CompletedProcess[str], float]:
    t0 = time.monotonic()
    done = lab.nfreplay("online", "nfreplay-online", "up", "--pcap", str(pcap), "--service", "80",
                        "--target", f"{ADDR['target']}:80", "--assistant", ADDR["assist"],
                        "--session-timeout", "10", *args, check=False, timeout=300)
    assert done.returncode == 0, done.stderr
    return done, time.monotonic() - t0


def logged(log: Path, tag: str) -> collections.Counter[str]:
    return collections.Counter(p for p in log.read_text().split() if f"/{tag}/" in p)


def setup_replay(lab: Lab, clients: str = CLIENT_NET) -> tuple[Path, subprocess.Popen[bytes]]:
    target_log = lab.start_nginx("target")
    lab.nfreplay("target", "nfreplay", "target", "up", "--clients", clients,
                 "--via", ADDR["assist"])
    assist = lab.start_assist("--clients", clients)
    return target_log, assist


def test_offline_replay_of_a_recorded_capture_at_three_speeds(lab: Lab) -> None:
    online_log = lab.start_nginx("online")
    pcap = record(lab, "off", short=60, keepalive=12, gap=0.3)  # ~2.5 s of traffic
    want = logged(online_log, "off")
    assert len(want) == 120
    target_log, assist = setup_replay(lab)
    took = {}
    for round_, speed in enumerate(("1", "4", "0.5"), start=1):
        done, took[speed] = replay(lab, pcap, "--speed", speed)
        assert "replayed" in done.stderr and "file errors: none" in done.stderr
        got = logged(target_log, "off")
        assert set(got) == set(want) and set(got.values()) == {round_}, \
            f"speed {speed}: {len(set(want) - set(got))} paths missing"
    print(f"offline replay wall time by speed: {took}")
    # Noisy machine: only the ordering is asserted, the figures are printed.
    assert took["4"] < took["1"] < took["0.5"]
    assert lab.stop(assist) == 0


def test_copies_from_a_client_pool_multiply_requests_without_collisions(lab: Lab) -> None:
    online_log = lab.start_nginx("online")
    pcap = record(lab, "amp", short=40, keepalive=8)
    want = logged(online_log, "amp")
    target_log, assist = setup_replay(lab, f"{CLIENT_NET},{POOL_NET}")
    done, _ = replay(lab, pcap, "--copies", "10", "--client-pool", POOL_NET, "--speed", "2")
    got = logged(target_log, "amp")
    assert set(got) == set(want) and set(got.values()) == {10}, collections.Counter(got.values())
    assert "completed" in done.stderr and "copies_unallocated" not in done.stderr
    assert "ended otherwise: none" in done.stderr, done.stderr
    assert lab.stop(assist) == 0


def test_percent_keeps_its_share_of_sessions(lab: Lab) -> None:
    online_log = lab.start_nginx("online")
    pcap = record(lab, "pct", short=2000, keepalive=0)
    assert len(logged(online_log, "pct")) == 2000
    target_log, assist = setup_replay(lab)
    replay(lab, pcap, "--percent", "30", "--speed", "4")
    # The decision is a pure function of the client's ip:port (nfreplay.session.sampling),
    # so the sessions kept are known exactly from the recording's SYNs; only their share
    # of 2000 depends on the ephemeral ports the kernel picked (about 30 %).
    sampler = Sampler(30.0)
    with open_capture(pcap) as f:
        syns = {(seg.src, seg.sport, seg.seq) for seg in (tcpip.parse(fr.ip) for fr in f
                                                          if fr.ip[9] == 6)
                if seg.flags & SYN and not seg.flags & ACK}  # a resent SYN: once
    assert len(syns) == 2000
    kept = sum(sampler.keep(ip, port, 0.0) for ip, port, _ in syns)
    got = len(logged(target_log, "pct"))
    print(f"--percent 30 kept {got} of 2000 sessions ({kept} expected)")
    assert got == kept and 500 < kept < 700
    assert lab.stop(assist) == 0


def toa_session(w: PcapWriter, ts: float, port: int, real: str, path: str,
                fin: bool = True) -> None:
    """A client's side of one HTTP/1.1 session whose SYN carries an LVS TOA option (without
    its FIN: a capture cut short)."""
    src, dst = tcpip.ip2int(CLIENTS[0]), tcpip.ip2int(ADDR["online"])
    toa = bytes([254, 8]) + port.to_bytes(2, "big") + tcpip.ip2int(real).to_bytes(4, "big")
    req = f"GET {path} HTTP/1.1\r\nHost: lab\r\nConnection: close\r\n\r\n".encode()
    isn, osn = 1000 + port, 50_000
    for dt, flags, seq, ack, payload, opts in (
        (0.000, SYN, isn, 0, b"", b"\x02\x04\x05\xb4" + toa),
        (0.001, ACK, isn + 1, osn + 1, b"", b""),
        (0.002, ACK | PSH, isn + 1, osn + 1, req, b""),
        (0.004, FIN | ACK, isn + 1 + len(req), osn + 200, b"", b""),
    )[:4 if fin else 3]:
        w.write(ts + dt, bytes(tcpip.build(src, dst, port, 80, seq, ack, flags,
                                           options=opts, payload=payload)))


def test_toa_option_filters_sessions_by_the_real_client(lab: Lab) -> None:
    pcap = lab.dir / "toa.pcap"
    with PcapWriter(pcap, linktype=LINKTYPE_RAW) as w:
        for i in range(20):
            real = "198.19.7.7" if i % 2 == 0 else "198.19.8.8"
            toa_session(w, 1000.0 + i * 0.01, 41000 + i, real, f"/toa/{real}/{i}")
    target_log, assist = setup_replay(lab)
    done, _ = replay(lab, pcap, "--allow", "198.19.7.0/24")
    got = logged(target_log, "toa")
    assert sorted(got) == sorted(f"/toa/198.19.7.7/{i}" for i in range(0, 20, 2)), done.stderr
    assert "filtered 10" in done.stderr
    assert lab.stop(assist) == 0


def test_bad_or_truncated_capture_files_are_one_line_or_counted(lab: Lab) -> None:
    target_log, assist = setup_replay(lab)
    junk = lab.dir / "junk.pcap"
    junk.write_bytes(b"this is not a capture file at all\n" * 4)
    done = lab.nfreplay("online", "nfreplay-online", "up", "--pcap", str(junk), "--service",
                        "80", "--target", f"{ADDR['target']}:80", "--assistant",
                        ADDR["assist"], check=False)
    assert done.returncode == 1 and done.stderr.count("\n") == 1, done.stderr
    assert "junk.pcap" in done.stderr and "Traceback" not in done.stderr
    # A capture cut in the middle of a record: what is whole is replayed, the cut is counted.
    whole = lab.dir / "whole.pcap"
    with PcapWriter(whole, linktype=LINKTYPE_RAW) as w:
        for i in range(4):
            toa_session(w, 1000.0 + i * 0.01, 42000 + i, "198.19.7.7", f"/cut/{i}")
    cut = lab.dir / "cut.pcap"
    cut.write_bytes(whole.read_bytes()[:-10])
    done, _ = replay(lab, cut, "--session-timeout", "2")  # its last FIN is the cut one
    assert "truncated_record 1" in done.stderr, done.stderr
    assert sorted(logged(target_log, "cut")) == [f"/cut/{i}" for i in range(4)]
    assert lab.stop(assist) == 0


def test_a_cut_and_time_corrupted_capture_ends_soon_after_the_file(lab: Lab) -> None:
    """Sessions the capture cut before their FIN do not keep the replay waiting for their
    timeouts, and a corrupt timestamp (+182 s) costs max_gap (5 s), counted; every request
    is replayed."""
    target_log, assist = setup_replay(lab)
    pcap = lab.dir / "damaged.pcap"
    with PcapWriter(pcap, linktype=LINKTYPE_RAW) as w:
        for i in range(4):
            toa_session(w, 1000.0 + i * 0.01, 43000 + i, "198.19.7.7", f"/dmg/{i}", fin=False)
        toa_session(w, 1182.0, 43010, "198.19.7.7", "/dmg/late")
    done, took = replay(lab, pcap, "--session-timeout", "120")
    assert took < 15, (took, done.stderr)  # 5 s of capped gap, then the sessions' last acts
    assert "gaps capped: 1" in done.stderr, done.stderr
    assert sorted(logged(target_log, "dmg")) == [*(f"/dmg/{i}" for i in range(4)), "/dmg/late"]
    assert lab.stop(assist) == 0

