"""CPU cost of nfreplay's pure per-packet work, without any I/O (no root needed).

    .venv/bin/python -m tests.bench.engine_bench [--sessions N]

Drives the online session table with synthetic keep-alive HTTP sessions (SYN, SYN-ACK record,
requests, response records, FINs) and the assist side's per-reply work (parse, record, route),
and prints µs per event. Compare figures within one run: the machine is shared.
"""

from __future__ import annotations

import argparse
import time

from nfreplay.engine.assist import AssistEngine
from nfreplay.proto import channel, tcpip
from nfreplay.proto.tcpip import ACK, FIN, PSH, SYN, ip2int
from nfreplay.engine.routing import route_key
from nfreplay.session.machine import Params
from nfreplay.session.table import SessionTable

ONLINE, TARGET = ip2int("198.18.0.2"), ip2int("198.18.0.3")
TS = b"\x01\x01\x08\x0a" + bytes(8)
REQ = b"GET /some/path/of/typical/length HTTP/1.1\r\nHost: bench\r\n\r\n"


def session_events(n: int, requests: int) -> tuple[list, list]:
    """Per session: client packets and matching target records, interleaved per step."""
    steps = []
    for i in range(n):
        cip, cport = ip2int("198.18.1.10") + i // 60000, 1024 + i % 60000
        isn, tisn, oseq = 1000 + i, 50_000 + i, 90_000
        c = lambda f, s, a, p=b"": tcpip.build(cip, ONLINE, cport, 80, s, a, f, options=TS, payload=p)
        r = lambda f, s, a, plen=0: channel.make_record(
            tcpip.build(TARGET, cip, 80, cport, s, a, f, options=TS, payload=b"r" * plen))
        seq, tseq = isn + 1, tisn + 1
        steps.append(("c", c(SYN, isn, 0)))
        steps.append(("r", r(SYN | ACK, tisn, isn + 1)))
        steps.append(("c", c(ACK, seq, oseq + 1)))
        for k in range(requests):
            steps.append(("c", c(ACK | PSH, seq, oseq + 1 + 300 * k, REQ)))
            seq += len(REQ)
            steps.append(("r", r(ACK | PSH, tseq, seq, 300)))
            tseq += 300
        steps.append(("c", c(FIN | ACK, seq, oseq + 1 + 300 * requests)))
        steps.append(("r", r(FIN | ACK, tseq, seq + 1)))
    return steps, []


def bench_online(sessions: int, requests: int) -> None:
    steps, _ = session_events(sessions, requests)
    parsed = [(kind, tcpip.parse(bytes(buf)), buf) for kind, buf in steps]
    table = SessionTable(Params(target_ip=TARGET, target_port=80))
    out: list = []
    now = 1000.0
    n_client = sum(1 for k, _, _ in parsed if k == "c")
    t0 = time.perf_counter()
    for kind, seg, buf in parsed:
        if kind == "c":
            pkt = bytearray(buf)  # the capture hands over a fresh copy
            table.client_packet(tcpip.parse(pkt), pkt, now, out)
        else:
            table.response(tcpip.parse(buf), now, out)
            table.flush(now, out)
        out.clear()
    dt = time.perf_counter() - t0
    c = table.c
    assert c.sessions_completed == sessions, c.snapshot()
    print(f"online session table: {len(parsed)} events ({n_client} client packets, "
          f"{len(parsed) - n_client} records) for {sessions} sessions x {requests} requests: "
          f"{dt * 1e6 / len(parsed):.2f} µs/event (parse + session + rewrite + checksum), "
          f"{c.packets_sent if hasattr(c, 'packets_sent') else 0} sent")


def bench_assist(n: int) -> None:
    e = AssistEngine(listener=None)  # type: ignore[arg-type]
    conns = [object() for _ in range(4)]
    payloads = []
    for i in range(n):
        cip, cport = ip2int("198.18.1.10") + i // 60000, 1024 + i % 60000
        e.router.add(route_key(cip, cport, TARGET, 80), conns[i % 4], 0.0)  # type: ignore[arg-type]
        payloads.append(bytes(tcpip.build(TARGET, cip, 80, cport, 1, 2, ACK, options=TS,
                                          payload=b"x" * 1448)[:128]))
    t0 = time.perf_counter()
    for p in payloads:
        e.on_packet(p)
    dt = time.perf_counter() - t0
    t1 = time.perf_counter()
    frames = sum(len(channel.encode_frames(r)) for r in e._pending.values())
    dt2 = time.perf_counter() - t1
    print(f"assist per reply: {dt * 1e6 / n:.2f} µs (parse + record + route); framing "
          f"{dt2 * 1e6 / n:.2f} µs/record ({frames} bytes)")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--sessions", type=int, default=20000)
    p.add_argument("--requests", type=int, default=5)
    a = p.parse_args()
    bench_online(a.sessions, a.requests)
    bench_assist(a.sessions * 5)


if __name__ == "__main__":
    main()
