"""The engines' `step()` on real loopback control connections, with a fake clock and small
fakes for the capture, the raw sender and the NFQUEUE.

Online: the control connection comes up with the version message; a captured SYN is
announced (the CLIENT_ADD is in the assistant's socket) before the SYN is sent; a record from
the assistant reaches its session; a bug in the session table is counted and the loop goes
on; a connection the assistant closes (or fills with bad bytes) is dropped and reconnected,
and the live sessions announced again; a connect that hangs is given up after the timeout.
Assist: announcements are read before the queue in one wake-up; a peer that closes takes its
routes with it.

Nothing sleeps for a fixed time: every wait is a bounded loop on the condition it needs."""

from __future__ import annotations

import select
import socket
import time
from collections.abc import Callable, Iterator

import pytest

from nfreplay.adapters.channel import Assistant, Listener
from nfreplay.engine.assist import AssistEngine
from nfreplay.engine.online import OnlineEngine
from nfreplay.proto import channel, tcpip
from nfreplay.proto.tcpip import ACK, PSH, SYN
from tests.unit.sockets import nothing_pending, recv_exact

from tests.unit.engine.loopback import (
    ADD, CLIENT, CPORT, Clock, FakeCapture, FakeSender, Online, PARAMS, TARGET, TISN, WAIT, frame, steps, target_record,
)  # fmt: skip


@pytest.fixture
def online() -> Iterator[Online]:
    o = Online()
    yield o
    o.close()


def view(pkt: bytes) -> tuple[int, int, int, int, int, int, int]:
    s = tcpip.parse(pkt)
    return s.src, s.sport, s.dst, s.dport, s.flags, s.seq, s.ack


def test_the_control_connection_comes_up_with_the_version_message(online: Online) -> None:
    e = online.e
    assert e.channel_up == 0 and e.table.accept_new is False  # no sessions before it is up
    assert online.up() == channel.encode_version(channel.FEATURE_NOTICES)
    assert e.channel_up == 1 and e.table.accept_new is True
    assert online.assistant.ready == [online.assistant.conns[0]]
    assert nothing_pending(online.peer)  # nothing more than the version message


def test_a_captured_syn_is_announced_on_the_channel_before_it_is_sent(online: Online) -> None:
    online.up()
    seen: list[bytes] = []
    # When the SYN reaches the raw sender, its CLIENT_ADD must already be in the
    # assistant's socket (recv_exact fails after WAIT seconds if it is not).
    online.sender.before_send = lambda pkt: seen.append(recv_exact(online.peer,
                                                                   channel.MSG_SIZE))
    online.capture.put(frame(SYN, 100))
    steps(online.e, lambda: online.sender.sent, "the SYN sent")
    assert seen == [ADD]
    dec = channel.MessageDecoder()
    assert dec.feed(channel.encode_version() + seen[0]) == [
        channel.ClientMessage(CLIENT, CPORT, channel.TYPE_CLIENT_ADD, TARGET, 80)]
    assert [view(p) for p in online.sender.sent] == [(CLIENT, CPORT, TARGET, 80, SYN, 100, 0)]
    c = online.e.c
    assert (c.packets_captured, c.packets_sent, c.syns_unannounced) == (1, 1, 0)
    assert online.e.announces_failed == 0


def test_a_record_from_the_assistant_reaches_its_session(online: Online) -> None:
    online.up()
    online.established()
    e, sent = online.e, online.sender.sent
    assert view(sent[1]) == (CLIENT, CPORT, TARGET, 80, ACK, 101, TISN + 1)
    assert (e.c.records_received, e.c.sessions_established) == (1, 1)
    # The session now maps the client's data onto the target's sequence space.
    online.capture.put(frame(ACK | PSH, 101, 9, b"GET / HTTP/1.1\r\n\r\n"))
    steps(e, lambda: len(sent) == 3, "the request sent")
    assert view(sent[2]) == (CLIENT, CPORT, TARGET, 80, ACK | PSH, 101, TISN + 1)
    # A record for no session, and one that is not IPv4/TCP, are counted, not errors.
    online.send_records(target_record(ACK, 1, 1, port=CPORT + 1), bytes(channel.RECORD_SIZE))
    steps(e, lambda: e.c.records_received == 3, "two more records read")
    assert (e.c.records_bad, e.c.internal_errors, e.channel_drops, len(sent)) == (1, 0, 0, 3)


class Broken:
    """Where the session table expects a session: any use of it fails like a bug would (a
    compiled table refuses it with TypeError, the pure one meets this RuntimeError)."""

    def __getattr__(self, name: str) -> object:
        raise RuntimeError("bug")


KEY = (CLIENT << 16) | CPORT


def test_a_bug_in_the_session_table_on_a_record_is_counted_and_the_loop_goes_on(
        online: Online) -> None:
    online.up()
    e = online.e
    online.capture.put(frame(SYN, 100))
    steps(e, lambda: online.sender.sent, "the SYN sent")

    session, e.table.sessions[KEY] = e.table.sessions[KEY], Broken()  # type: ignore[assignment]
    online.send_records(target_record(SYN | ACK, TISN, 101))
    steps(e, lambda: e.c.records_received == 1, "the record read")
    assert e.c.internal_errors == 1 and e.channel_up == 1 and e.channel_drops == 0
    e.table.sessions[KEY] = session  # the bug is gone: the next record is handled
    online.send_records(target_record(SYN | ACK, TISN, 101))
    steps(e, lambda: len(online.sender.sent) == 2, "the handshake's ACK sent")
    assert view(online.sender.sent[1])[4:] == (ACK, 101, TISN + 1)
    assert e.c.internal_errors == 1 and e.c.records_received == 2


def test_a_bug_in_the_session_table_on_a_packet_or_a_timer_is_counted(online: Online) -> None:
    online.up()
    e = online.e

    e.table.sessions[KEY] = Broken()  # type: ignore[assignment]
    online.capture.put(frame(SYN, 100))
    steps(e, lambda: e.c.packets_captured == 1, "the packet captured")
    assert e.c.internal_errors == 1 and online.sender.sent == []
    del e.table.sessions[KEY]
    online.capture.put(frame(SYN, 100))
    steps(e, lambda: e.c.packets_captured == 2, "the packet captured")
    assert [view(p)[4:] for p in online.sender.sent] == [(SYN, 100, 0)]
    # The SYN's retransmission timer meets a bug (a counter that cannot count): counted,
    # and the loop goes on.
    retransmits, e.c.syn_retransmits = e.c.syn_retransmits, Broken()  # type: ignore[assignment]
    online.clock.t += 5.0
    e.step(0)
    assert e.c.internal_errors == 2
    e.c.syn_retransmits = retransmits
    e.step(0)
    assert e.c.internal_errors == 2


@pytest.mark.parametrize("failure", ["closed", "bad bytes"])
def test_a_failed_control_connection_is_dropped_then_reconnected_and_sessions_reannounced(
        online: Online, failure: str) -> None:
    online.up()
    online.established()
    e, a = online.e, online.assistant
    old = a.conns[0]
    if failure == "closed":
        online.peer.close()
    else:
        online.peer.sendall(b"\x00\x00")  # frame count 0: not a frame we understand
    steps(e, lambda: e.channel_drops == 1, "the connection dropped")
    assert old is not None and old.closed and e.channel_up == 0 and a.ready == []
    assert e.table.accept_new is False
    # New sessions are refused while no control connection is up; the live one stays.
    online.capture.put(frame(SYN, 700, port=CPORT + 1))
    for _ in range(5):
        e.step(0)
    assert e.c.sessions_skipped_no_channel == 1 and len(online.sender.sent) == 2
    assert a.conns[0] is old  # the reconnect waits 0.2 s (fake clock), it does not spin
    online.clock.t += 0.2
    assert online.up() == channel.encode_version(channel.FEATURE_NOTICES)
    new = a.conns[0]
    assert new is not old and e.channel_up == 1 and a.ready == [new]
    # The session announced on the dead connection is announced again on the new one.
    assert recv_exact(online.peer, channel.MSG_SIZE) == ADD
    assert nothing_pending(online.peer)
    online.send_records(target_record(ACK, TISN + 1, 101, plen=10))
    steps(e, lambda: len(online.sender.sent) == 3, "the ACK of the response")
    assert view(online.sender.sent[2])[4:] == (ACK, 101, TISN + 11)


def test_a_connect_that_hangs_is_given_up_after_the_timeout_and_retried() -> None:
    full = socket.socket()
    full.bind(("127.0.0.1", 0))
    full.listen(0)  # room for one queued connection: our SYN is dropped
    filler = socket.create_connection(full.getsockname(), timeout=WAIT)
    a = Assistant("127.0.0.1", full.getsockname()[1], 1)
    clock, capture = Clock(), FakeCapture()
    e = OnlineEngine(PARAMS, capture, FakeSender(), [a], clock=clock, reconnect_interval=2.0,
                     connect_timeout=3.0)
    try:
        e.step(0)  # t=1000: the connect starts
        first = a.conns[0]
        assert first is not None and first.connecting and first.since == 1000.0
        clock.t = 1002.999  # a connect round (nothing missing); the next is due at 1004.999
        for _ in range(3):
            e.step(0.01)
        assert a.conns[0] is first and first.connecting and not first.closed
        clock.t = 1003.0
        e.step(0)  # connect_timeout after it started: given up
        assert first.closed and a.conns[0] is first and e.channel_up == 0
        clock.t = 1004.99
        e.step(0)  # rounds are reconnect_interval apart: not yet
        assert a.conns[0] is first
        clock.t = 1004.999
        e.step(0)
        second = a.conns[0]
        assert second is not first and second is not None
        assert second.connecting and second.since == 1004.999
        assert e.channel_drops == 0  # never up, so never dropped
    finally:
        e.shutdown()
        capture.close()
        filler.close()
        full.close()


# ------------------------------------------------------------------ the assist engine


class FakeQueue:
    """An NFQUEUE: readable (a socketpair byte) while replies wait; `drain` gives each to the
    callback and keeps its verdict."""

    def __init__(self, callback: Callable[[bytes], bool]) -> None:
        self._r, self._w = socket.socketpair()
        self._r.setblocking(False)
        self.callback = callback
        self.waiting: list[bytes] = []
        self.verdicts: list[bool] = []

    def fileno(self) -> int:
        return self._r.fileno()

    def put(self, payload: bytes) -> None:
        self.waiting.append(payload)
        self._w.send(b"!")

    def drain(self) -> None:
        try:
            self._r.recv(4096)
        except BlockingIOError:
            pass
        while self.waiting:
            self.verdicts.append(self.callback(self.waiting.pop(0)))

    def close(self) -> None:
        self._r.close()
        self._w.close()


@pytest.fixture
def assist() -> Iterator[tuple[AssistEngine, FakeQueue, socket.socket]]:
    listener = Listener("127.0.0.1", 0)
    e = AssistEngine(listener, clock=Clock())
    q = FakeQueue(e.on_packet)
    e.queue = q
    peer = socket.create_connection(listener.sock.getsockname(), timeout=WAIT)
    steps(e, lambda: len(e.conns) == 1, "the online side's connection accepted")
    yield e, q, peer
    peer.close()
    e.shutdown()
    q.close()


def reply(plen: int = 10) -> bytes:
    return bytes(tcpip.build(TARGET, CLIENT, 80, CPORT, 7000, 101, ACK | PSH,
                             payload=b"p" * plen))


def test_an_announcement_and_its_reply_in_one_wake_up_are_routed(assist) -> None:  # type: ignore[no-untyped-def]
    """The connection is read before the queue is drained: a data reply (never parked)
    queued in the same wake-up as its CLIENT_ADD already finds its route."""
    e, q, peer = assist
    peer.sendall(channel.encode_version() + ADD)
    q.put(reply(10))
    conn = e.conns[0]
    deadline = time.monotonic() + WAIT
    while True:  # both ready before the one step that handles them
        r, _, _ = select.select([conn, q], [], [], 0.05)
        if len(r) == 2:
            break
        assert time.monotonic() < deadline, "the CLIENT_ADD and the reply never both waited"
    e.step(0)
    assert q.verdicts == [False]  # DROP: the reply never reaches the client
    c = e.c
    assert (c.client_adds, c.routes, c.records_unrouted, c.records_parked) == (1, 1, 0, 0)
    assert (c.records_sent, c.frames_sent) == (1, 1)
    data = recv_exact(peer, 2 + channel.RECORD_SIZE)
    assert data == channel.encode_frame([channel.make_record(reply(10))])
    assert tcpip.parse(channel.FrameDecoder().feed(data)[0]).payload_len == 10


def test_a_peer_that_closes_takes_its_routes_with_it(assist) -> None:  # type: ignore[no-untyped-def]
    e, q, peer = assist
    peer.sendall(channel.encode_version() + ADD)
    steps(e, lambda: e.c.routes == 1, "the route added")
    peer.close()
    steps(e, lambda: not e.conns, "the connection closed")
    c = e.c
    assert (c.connections_closed, c.connections_live, c.routes, len(e.router)) == (1, 0, 0, 0)
    q.put(reply(10))
    steps(e, lambda: q.verdicts, "the reply judged")
    assert q.verdicts == [False] and c.records_unrouted == 1 and c.records_sent == 0


# ------------------------------------------------------------------ a bug found on the way


class HookedClock(Clock):
    """A fake clock that runs `hook` once, on its next reading (step() reads the clock right
    after select(): the hook acts between the two)."""

    def __init__(self) -> None:
        super().__init__()
        self.hook: Callable[[], None] | None = None

    def __call__(self) -> float:
        hook, self.hook = self.hook, None
        if hook is not None:
            hook()
        return self.t


def test_a_connect_completed_on_the_timeout_path_reannounces_live_sessions() -> None:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(0)  # one queued connection fills it
    server.settimeout(WAIT)
    clock, capture, sender = HookedClock(), FakeCapture(), FakeSender()
    a = Assistant("127.0.0.1", server.getsockname()[1], 1)
    e = OnlineEngine(PARAMS, capture, sender, [a], clock=clock, connect_timeout=3.0)
    peers: list[socket.socket] = []
    filler = None
    try:
        steps(e, lambda: e.channel_up == 1, "the control connection up")
        peers.append(server.accept()[0])
        assert recv_exact(peers[0], channel.MSG_SIZE) == channel.encode_version(channel.FEATURE_NOTICES)
        capture.put(frame(SYN, 100))
        steps(e, lambda: sender.sent, "the SYN sent")
        assert recv_exact(peers[0], channel.MSG_SIZE) == ADD
        peers[0].send(channel.encode_frame([target_record(SYN | ACK, TISN, 101)]))
        steps(e, lambda: len(sender.sent) == 2, "the session established")
        # The assistant goes away; its accept queue is full when we come back, so our SYN is
        # dropped and the connect hangs until the kernel retries it (about 1 s later).
        filler = socket.create_connection(server.getsockname(), timeout=WAIT)
        peers[0].close()
        steps(e, lambda: e.channel_drops == 1, "the connection dropped")
        clock.t += 0.2
        e.step(0)
        conn = a.conns[0]
        assert conn is not None and conn.connecting
        _, w, _ = select.select([], [conn], [], 0)
        assert not w, "the connect did not hang: the test's premise failed"

        def connect_completes_now() -> None:
            server.accept()[0].close()  # the filler: room for our retried SYN
            deadline = time.monotonic() + 3.0
            while True:
                try:
                    conn.sock.getpeername()
                    return
                except OSError:
                    assert time.monotonic() < deadline, "the retried connect never completed"
                    select.select([], [conn], [], 0.05)

        clock.hook = connect_completes_now
        clock.t = conn.since + 3.0  # the timeout check runs: it finds the connection up
        e.step(0)
        assert e.channel_up == 1 and not conn.connecting
        peers.append(server.accept()[0])
        assert recv_exact(peers[1], channel.MSG_SIZE) == channel.encode_version(channel.FEATURE_NOTICES)
        for _ in range(5):
            e.step(0)
        # As after a connect that select() reported: the live session announced again.
        assert not nothing_pending(peers[1]), "the live session was not announced again"
        assert recv_exact(peers[1], channel.MSG_SIZE) == ADD
    finally:
        for p in peers:
            p.close()
        if filler is not None:
            filler.close()
        e.shutdown()
        capture.close()
        server.close()
