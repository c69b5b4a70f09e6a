"""The mirror input's socket (adapters.mirror) on loopback, and the online engine fed by it:
every datagram counted once under one name, the engine's LiveCapture contract (batches, the
reader's lag), and a mirror that copies every packet twice replays each request once."""

from __future__ import annotations

import socket
import time

import pytest

from nfreplay.adapters.mirror import VxlanMirror
from nfreplay.engine.online import OnlineEngine
from nfreplay.errors import HostError
from nfreplay.proto import channel, tcpip
from nfreplay.proto.tcpip import ACK, FIN, PSH, SYN, ip2int
from nfreplay.proto.vxlan import MirrorFilter
from nfreplay.session.counters import Counters
from nfreplay.session.machine import Params
from tests.unit.engine.fakes import FakeAssistant, FakeSender

CLIENT, ONLINE, TARGET = ip2int("198.18.1.10"), ip2int("198.18.0.2"), ip2int("198.18.0.3")
ETH = bytes(12) + b"\x08\x00"
VNI = 42


def vx(ip: bytes, vni: int = VNI) -> bytes:
    return b"\x08\0\0\0" + vni.to_bytes(3, "big") + b"\0" + ETH + ip


def client(flags: int, seq: int, payload: bytes = b"", ack: int = 0, ip_id: int = 1,
           sport: int = 40000) -> bytes:
    return bytes(tcpip.build(CLIENT, ONLINE, sport, 80, seq, ack, flags, payload=payload,
                             ip_id=ip_id))


@pytest.fixture
def pair():  # type: ignore[no-untyped-def]
    counters = Counters()
    m = VxlanMirror("127.0.0.1", 0, MirrorFilter([(ONLINE, 80)], [(TARGET, 80)], VNI), counters)
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    yield m, tx, counters
    tx.close()
    m.close()


def send(tx: socket.socket, m: VxlanMirror, *datagrams: bytes) -> None:
    for d in datagrams:
        tx.sendto(d, (m.ip, m.port))


def drain(m: VxlanMirror, callback, want: int, on_lag=None) -> int:  # type: ignore[no-untyped-def]
    """Dispatch until `want` datagrams were read (loopback delivers at once; bounded)."""
    got = 0
    deadline = time.monotonic() + 5
    while got < want and time.monotonic() < deadline:
        got += m.dispatch(callback, on_lag)
    return got


def test_every_datagram_is_counted_once_under_one_name(pair) -> None:  # type: ignore[no-untyped-def]
    m, tx, c = pair
    kept: list[tuple[bytes, int]] = []
    good = vx(client(SYN, 100))
    reply = vx(bytes(tcpip.build(ONLINE, CLIENT, 80, 40000, 7, 101, SYN | ACK)))
    datagrams = [good, good, reply, vx(client(SYN, 100, ip_id=2), vni=7), b"garbage",
                 good[:30], vx(client(SYN, 5, sport=40001))[:-3],
                 vx(bytes(tcpip.build(CLIENT, ONLINE, 40000, 22, 1, 0, SYN)))]
    send(tx, m, *datagrams)
    assert drain(m, lambda f, off: kept.append((f, off)), len(datagrams)) == len(datagrams)
    assert [(f, off) for f, off in kept] == [(good, 22)]
    assert (c.mirror_packets, c.mirror_bad, c.mirror_replies, c.mirror_other,
            c.mirror_duplicates) == (8, 4, 1, 1, 1)
    assert c.mirror_bytes == sum(map(len, datagrams))
    assert m.stats() == (8, 0, 0)


def test_batches_are_bounded_and_the_first_tells_the_lag(pair) -> None:  # type: ignore[no-untyped-def]
    m, tx, c = pair
    send(tx, m, *(vx(client(SYN, 100, sport=30000 + i)) for i in range(10)))
    lags: list[float] = []
    seen: list[int] = []
    deadline = time.monotonic() + 5
    while len(seen) < 4 and time.monotonic() < deadline:
        m.dispatch(lambda f, off: seen.append(off), lags.append, 4)
    assert seen == [22] * 4 and len(lags) == 1 and 0 <= lags[0] < 5
    time.sleep(0.05)
    assert m.dispatch(lambda f, off: seen.append(off), lags.append, 4) == 4
    assert len(lags) == 2 and lags[1] >= 0.04  # it waited in the socket that long
    assert drain(m, lambda f, off: seen.append(off), 2) == 2 and len(lags) == 2
    assert m.dispatch(lambda f, off: None, lags.append) == 0  # nothing left: no lag to tell
    assert c.mirror_packets == 10 and len(seen) == 10


def test_a_port_in_use_is_one_clear_error(pair) -> None:  # type: ignore[no-untyped-def]
    m, _, c = pair
    with pytest.raises(HostError, match=r"mirror input: cannot listen on udp 127\.0\.0\.1:"
                                        rf"{m.port}: .*vxlan device"):
        VxlanMirror("127.0.0.1", m.port, m.filter, c)


def replay(window: int, twice: bool, late_syn: bool = False) -> tuple[list[bytes], Counters]:
    """A short HTTP session mirrored through the engine (each datagram twice if `twice`):
    the packets sent to the target, and the counters."""
    counters = Counters()
    m = VxlanMirror("127.0.0.1", 0, MirrorFilter([(ONLINE, 80)], [(TARGET, 80)], VNI, window),
                    counters)
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sender = FakeSender()
    e = OnlineEngine(Params(target_ip=TARGET, target_port=80), capture=m, sender=sender,
                     assistants=[FakeAssistant()], counters=counters)  # type: ignore[list-item]
    e.channel_up = 1
    n = 2 if twice else 1

    def mirrored(*packets: bytes) -> None:
        datagrams = [vx(p) for p in packets for _ in range(n)]
        send(tx, m, *datagrams)
        assert drain(m, e._on_frame, len(datagrams)) == len(datagrams)
        e._emit()

    def target(flags: int, seq: int, ack: int, payload: bytes = b"") -> None:
        e._on_record(channel.make_record(tcpip.build(TARGET, CLIENT, 80, 40000, seq, ack, flags,
                                                     payload=payload)), e.now)
        e.table.flush(e.now, e.out)
        e._emit()

    try:
        request = b"GET /once HTTP/1.1\r\nHost: lab\r\n\r\n"
        mirrored(client(SYN, 100, ip_id=1))
        target(SYN | ACK, 5000, 101)
        mirrored(client(ACK, 101, ack=9001, ip_id=2),
                 client(ACK | PSH, 101, request, ack=9001, ip_id=3))
        response = b"HTTP/1.1 200 OK\r\n\r\n".ljust(99, b"x")  # as long as production's
        target(ACK, 5001, 101 + len(request), response)
        mirrored(client(ACK | FIN, 101 + len(request), ack=9100, ip_id=4))
        if late_syn:
            end = 101 + len(request) + 1
            target(ACK | FIN, 5001 + len(response), end)
            assert counters.sessions_completed == 1
            mirrored(client(SYN, 100, ip_id=1))
    finally:
        tx.close()
        m.close()
    return sender.sent, counters


@pytest.mark.parametrize("window", [0, 1024])
def test_a_mirror_that_copies_every_packet_twice_replays_each_request_once(window: int) -> None:
    """The session machine itself sends a client's bytes once (a copy is a retransmission to
    it); the duplicate window keeps the copies away from it, so that its counters count the
    client's packets, not the mirror's."""
    once, _ = replay(window, twice=False)
    twice, c = replay(window, twice=True)
    assert [p for p in twice] == [p for p in once]
    assert sum(b"GET /once" in p for p in twice) == 1
    assert c.syns_sent == 1 and c.requests_sent == 1
    assert c.mirror_packets == 8
    if window:
        assert c.mirror_duplicates == 4 and c.packets_captured == 4
        assert c.client_duplicates == 0
    else:
        assert c.mirror_duplicates == 0 and c.packets_captured == 8
    # Every datagram accounted for: handed on as captured, or counted under why not.
    assert c.mirror_packets == (c.packets_captured + c.mirror_bad + c.mirror_replies
                                + c.mirror_other + c.mirror_duplicates)


@pytest.mark.parametrize("window", [0, 1024])
def test_a_late_copy_of_a_syn_opens_no_second_session(window: int) -> None:
    """A copy delivered after its session ended is, to the session machine, a new connection
    on that port: without the duplicate window the target would see a second handshake."""
    sent, c = replay(window, twice=False, late_syn=True)
    assert c.sessions_completed == 1
    if window:
        assert c.syns_sent == 1 and c.mirror_duplicates == 1
    else:  # what the window is for
        assert c.syns_sent == 2 and sum(tcpip.parse(p).flags == SYN for p in sent) == 2


def test_data_a_mirror_delivered_before_its_syn_follows_the_syn() -> None:
    """Reordered by the mirror: the request arrives before its connection's SYN. It waits
    as a mid-stream candidate, then follows the SYN into its session: replayed once, after
    the handshake, nothing lost to a capture gap."""
    sender = FakeSender()
    e = OnlineEngine(Params(target_ip=TARGET, target_port=80), capture=None, sender=sender,
                     assistants=[FakeAssistant()])  # type: ignore[list-item]
    e.channel_up = 1
    request = b"GET /late-syn HTTP/1.1\r\n\r\n"
    for p in (client(ACK | PSH, 101, request, ack=9001, ip_id=2), client(SYN, 100, ip_id=1)):
        e._on_frame(ETH + p, 14)
    e._emit()
    assert [tcpip.parse(p).flags for p in sender.sent] == [SYN]
    e._on_record(channel.make_record(tcpip.build(TARGET, CLIENT, 80, 40000, 5000, 101,
                                                 SYN | ACK)), e.now)
    e.table.flush(e.now, e.out)
    e._emit()
    data = [p for p in sender.sent if tcpip.parse(p).payload_len]
    assert len(data) == 1 and request in data[0] and tcpip.parse(data[0]).seq == 101
    assert e.c.midstream_unconfirmed == 0 and e.c.sessions_midstream == 0
    assert not e.table._unconfirmed


def test_the_mirror_counters_in_status_and_metrics() -> None:
    """The issue's names, spelt exactly: a group of their own in `nfreplay status`, Prometheus
    counters `nfreplay_online_mirror_<name>_total`, and the stats line of the log."""
    from prometheus_client.exposition import generate_latest
    from prometheus_client.registry import CollectorRegistry

    from nfreplay import status
    from nfreplay.cli.online import MIRROR_STATS_LINE
    from nfreplay.metrics import families

    names = ("mirror_packets", "mirror_bytes", "mirror_bad")
    assert all(status._group("online", n) == "mirror" for n in names)
    c = Counters()
    c.mirror_packets, c.mirror_bytes, c.mirror_bad = 3, 300, 1
    doc = {"role": "online", "instance": "x", "counters": c.snapshot(), "extra": {},
           "levels": sorted(Counters.levels)}

    class Doc:
        def collect(self):  # type: ignore[no-untyped-def]
            return families(doc, "0")

    registry = CollectorRegistry()
    registry.register(Doc())  # type: ignore[arg-type]
    text = generate_latest(registry).decode()
    for name, value in zip(names, (3, 300, 1)):
        assert f"nfreplay_online_{name}_total {value:.1f}" in text
    assert {key for _, key, _ in MIRROR_STATS_LINE} >= {"mirror_packets", "mirror_bad"}
