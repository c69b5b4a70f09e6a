"""Fan-in on the assist side, as transcripts: control-channel bytes and target replies in,
frames per connection out. A route whose session is over passes to the next announcer; an
announcement of a live one from another online host is a collision: an nfreplay-online that
offered the extension is told (a notice), a tcpcopy's session is counted, with one WARN line.
And the extension itself: offered in the version message, never shown to a compat peer."""

from __future__ import annotations

import logging

import pytest

from nfreplay.engine.assist import FIN_GRACE, AssistEngine
from nfreplay.engine.routing import Router, route_key
from nfreplay.errors import WireError
from nfreplay.proto import channel, tcpip
from nfreplay.proto.tcpip import ACK, FIN, PSH, RST, ip2int

CLIENT, TARGET = ip2int("198.18.1.10"), ip2int("198.18.0.3")
ADD = channel.encode_client_add(CLIENT, 40000, TARGET, 80)
DEL = channel.encode_client_del(CLIENT, 40000, TARGET, 80)
KEY = route_key(CLIENT, 40000, TARGET, 80)


class Peer:
    """A control connection as the assist engine sees it: what the peer sent (`say`), and
    what the engine queued for it, decoded (`heard`)."""

    def __init__(self, name: str) -> None:
        self.peer = f"{name}:5000"
        self.decoder = channel.MessageDecoder()
        self.inbox = b""
        self.out = bytearray()
        self.sent = bytearray()
        self.closed = False
        self.writing = False
        self.version_checked = False
        self.notices = False
        self.since = 0.0

    def receive(self) -> list:
        data, self.inbox = self.inbox, b""
        return self.decoder.feed(data)

    def queue(self, data: bytes) -> None:
        self.out += data

    def flush(self, limit: int = 0) -> bool:
        self.sent += self.out
        self.out.clear()
        return True

    def heard(self) -> list[bytes]:
        records = channel.FrameDecoder().feed(bytes(self.sent))
        self.sent.clear()
        return records


class Fanin:
    def __init__(self) -> None:
        self.now = 100.0
        self.e = AssistEngine(listener=None, clock=lambda: self.now)  # type: ignore[arg-type]

    def connect(self, name: str, version: bytes) -> Peer:
        p = Peer(name)
        self.e.conns.append(p)  # type: ignore[arg-type]
        self.say(p, version)
        return p

    def say(self, p: Peer, data: bytes) -> None:
        p.inbox += data
        self.e.now = self.now
        self.e._read(p, self.now)  # type: ignore[arg-type]
        self.e._send()

    def reply(self, flags: int, plen: int = 0) -> None:
        self.e.now = self.now
        pkt = bytes(tcpip.build(TARGET, CLIENT, 80, 40000, 1000, 2000, flags,
                                payload=b"p" * plen))
        assert self.e.on_packet(pkt) is False  # every reply is dropped
        self.e._send()


NFREPLAY = channel.encode_version(channel.FEATURE_NOTICES)
TCPCOPY = channel.encode_version()


def kinds(records: list[bytes]) -> list[str]:
    """Each record as "reply" or the notice's kind (with its message's port)."""
    out = []
    for r in records:
        if r[0]:
            out.append("reply")
        else:
            kind, _, m = channel.parse_notice(r)
            out.append({0: "hello", 1: f"collided {m.clt_port}"}[kind])
    return out


def test_the_version_message_offers_the_extension_where_tcpcopy_sends_zeros() -> None:
    offer = channel.encode_version(channel.FEATURE_NOTICES)
    assert offer[:8] == channel.encode_version()[:8]  # what intercept checks: unchanged
    assert offer[8:] == b"NFRP\x00\x01"
    dec = channel.MessageDecoder()
    assert dec.feed(offer + ADD) == [channel.ClientMessage(CLIENT, 40000, 1, TARGET, 80)]
    assert dec.features == channel.FEATURE_NOTICES and not dec.version_mismatch
    plain = channel.MessageDecoder()
    plain.feed(channel.encode_version())
    assert plain.features == 0


def test_notices_round_trip_and_a_record_is_never_one() -> None:
    n = channel.encode_notice(channel.NOTICE_COLLIDED, ADD)
    assert len(n) == channel.RECORD_SIZE and n[0] == 0
    assert channel.parse_notice(n) == (1, 0, channel.ClientMessage(CLIENT, 40000, 1, TARGET, 80))
    for junk in (bytes(channel.RECORD_SIZE), channel.make_record(tcpip.build(
            TARGET, CLIENT, 80, 40000, 1, 2, ACK))):
        with pytest.raises(WireError):
            channel.parse_notice(junk)


def test_an_nfreplay_peer_is_greeted_and_told_of_a_collision_and_the_owner_keeps_its_replies(
        ) -> None:
    f = Fanin()
    a = f.connect("198.18.0.2", NFREPLAY)
    b = f.connect("198.18.0.5", NFREPLAY)
    assert kinds(a.heard()) == ["hello"] and kinds(b.heard()) == ["hello"]
    f.say(a, ADD)
    f.say(b, ADD)  # the same client ip:port while a's session is live
    assert kinds(b.heard()) == ["collided 40000"]
    f.reply(ACK | PSH, plen=10)
    assert kinds(a.heard()) == ["reply"] and b.heard() == []
    c = f.e.c
    assert (c.announces_collided, c.announces_refused, c.sessions_collided) == (1, 1, 0)
    assert (c.notices_sent, c.records_sent) == (3, 1)  # notices are not records


def test_a_tcpcopy_that_collides_is_counted_and_warned_once_and_never_sent_a_notice(
        caplog: pytest.LogCaptureFixture) -> None:
    f = Fanin()
    a = f.connect("198.18.0.2", TCPCOPY)
    b = f.connect("198.18.0.5", TCPCOPY)
    other = channel.encode_client_add(CLIENT, 40002, TARGET, 80)
    f.say(a, ADD + other)
    with caplog.at_level(logging.WARNING, "nfreplay.assist"):
        f.say(b, ADD + other)
    assert a.heard() == [] and b.heard() == []  # a compat peer sees records only
    c = f.e.c
    assert (c.announces_collided, c.sessions_collided, c.notices_sent) == (2, 2, 0)
    lines = [r.getMessage() for r in caplog.records if "sessions_collided" in r.getMessage()]
    assert len(lines) == 1, lines
    assert "198.18.1.10:40000" in lines[0] and "198.18.0.2:5000" in lines[0]
    assert "client_pool" in lines[0] and "tcpcopy -c" in lines[0]


def test_a_withdrawn_route_passes_to_the_next_online_host_at_once() -> None:
    """CLIENT_DEL (the extension's peers send it when a session is over): the client's port
    is free on the target, another online host's session takes it, and its replies."""
    f = Fanin()
    a = f.connect("198.18.0.2", NFREPLAY)
    b = f.connect("198.18.0.5", NFREPLAY)
    f.say(a, ADD)
    f.reply(ACK | FIN)  # the target's FIN: not the end for a peer that says when it is
    f.say(b, ADD)
    assert kinds(b.heard()) == ["hello", "collided 40000"]
    f.say(b, DEL)  # not b's route: ignored
    f.say(b, ADD)
    assert kinds(b.heard()) == ["collided 40000"]
    f.say(a, DEL)
    f.say(b, ADD)
    assert b.heard() == [] and f.e.c.routes_taken_over == 1
    f.reply(ACK)
    assert kinds(b.heard()) == ["reply"]
    assert kinds(a.heard()) == ["hello", "reply"]  # a's FIN before it passed


def test_a_tcpcopy_route_passes_a_moment_after_the_targets_fin_or_at_once_after_a_reset(
        ) -> None:
    f = Fanin()
    a = f.connect("198.18.0.2", TCPCOPY)
    b = f.connect("198.18.0.5", TCPCOPY)
    f.say(a, ADD)
    f.reply(ACK | FIN)
    f.say(b, ADD)  # a's last ACK is still owed to a
    assert f.e.c.sessions_collided == 1
    f.now += FIN_GRACE
    f.say(b, ADD)
    assert f.e.c.routes_taken_over == 1 and f.e.c.sessions_collided == 1
    f.reply(ACK)
    assert kinds(b.heard()) == ["reply"]
    f.reply(RST)  # the target reset b's connection: a may have the port back now
    f.say(a, ADD)
    assert f.e.c.routes_taken_over == 2
    f.reply(ACK)
    assert kinds(a.heard()) == ["reply", "reply"]  # the FIN earlier, this one now


def test_release_marks_are_forgotten_with_their_routes() -> None:
    r: Router[str] = Router(idle=10.0)
    r.release(KEY, 0.0)  # no route: nothing to release
    assert not r._released
    r.add(KEY, "A", 0.0)
    r.release(KEY, 5.0)
    assert r.add(KEY, "B", 1.0) is None and r.last_refusal == "owned"
    assert r.add(KEY, "A", 2.0) == []  # its owner again: live again
    assert not r._released and r.add(KEY, "B", 6.0) is None
    r.withdraw(KEY, "B", 6.0)  # not B's
    assert r.add(KEY, "B", 6.0) is None
    r.withdraw(KEY, "A", 6.0)
    r.close("A")
    assert not r._released and r.lookup(KEY) is None
    r.add(KEY, "B", 7.0)
    r.release(KEY, 7.0)
    r.expire(20.0)
    r.expire(31.0)  # unused for two periods: gone, and its mark with it
    assert r.lookup(KEY) is None and not r._released


# ------------------------------------------------------------------ the online engine


def test_the_online_engine_moves_a_collided_session_and_withdraws_it_when_over(
        caplog: pytest.LogCaptureFixture) -> None:
    """On a real loopback control connection: hello, then a collision notice for the SYN just
    announced: the SYN goes again from another port, announced first; the session replays
    there; when it is over, CLIENT_DEL for that port. A session that cannot move any more is
    counted (sessions_collided) with one WARN line."""
    from nfreplay.engine.online import OnlineEngine
    from nfreplay.session.table import MAX_MOVES
    from tests.unit.sockets import nothing_pending, recv_exact
    from tests.unit.engine.loopback import (
        CPORT, PARAMS, TISN, Online, frame, steps, target_record,
    )

    o = Online()
    try:
        assert o.up() == NFREPLAY
        e: OnlineEngine = o.e
        o.send_records(channel.encode_notice(channel.NOTICE_HELLO))
        steps(e, lambda: o.assistant.ready[0].notices, "the hello read")
        o.capture.put(frame(tcpip.SYN, 100))
        steps(e, lambda: len(o.sender.sent) == 1, "the SYN sent")
        first = recv_exact(o.peer, channel.MSG_SIZE)
        assert first == channel.encode_client_add(CLIENT, CPORT, TARGET, 80)
        o.send_records(channel.encode_notice(channel.NOTICE_COLLIDED, first))
        steps(e, lambda: len(o.sender.sent) == 2, "the SYN sent again")
        syn = tcpip.parse(o.sender.sent[1])
        assert syn.sport != CPORT and (syn.flags, syn.seq) == (tcpip.SYN, 100)
        assert recv_exact(o.peer, channel.MSG_SIZE) == channel.encode_client_add(
            CLIENT, syn.sport, TARGET, 80)
        assert (e.c.collision_notices, e.c.sessions_moved) == (1, 1)
        o.send_records(target_record(tcpip.SYN | ACK, TISN, 101, port=syn.sport))
        steps(e, lambda: len(o.sender.sent) == 3, "the handshake's ACK")
        o.capture.put(frame(ACK | FIN, 101, 1))  # captured on the client's own port
        o.clock.t += PARAMS.response_timeout  # no greeting came: the FIN may go
        steps(e, lambda: len(o.sender.sent) == 4, "the FIN sent")
        fin = tcpip.parse(o.sender.sent[3])
        assert (fin.sport, fin.flags) == (syn.sport, ACK | FIN)
        o.send_records(target_record(ACK | FIN, TISN + 1, 102, port=syn.sport))
        steps(e, lambda: e.c.sessions_completed == 1, "the session completed")
        assert recv_exact(o.peer, channel.MSG_SIZE) == channel.encode_client_del(
            CLIENT, syn.sport, TARGET, 80)

        o.capture.put(frame(tcpip.SYN, 5000, port=CPORT + 2))
        steps(e, lambda: len(o.sender.sent) == 6, "the second SYN sent")
        with caplog.at_level(logging.WARNING, "nfreplay.online"):
            msg = b""
            for _ in range(MAX_MOVES + 2):  # the last one comes late: changes nothing
                if e.c.sessions_collided == 0:
                    msg = recv_exact(o.peer, channel.MSG_SIZE)  # the latest announcement
                o.send_records(channel.encode_notice(channel.NOTICE_COLLIDED, msg))
                n = e.c.collision_notices
                steps(e, lambda: e.c.collision_notices == n + 1, "the notice read")
        assert (e.c.sessions_collided, e.c.unestablished_collided) == (1, 1)
        lines = [r.getMessage() for r in caplog.records if "sessions_collided" in r.getMessage()]
        assert len(lines) == 1 and "online.client_pool" in lines[0], lines
        assert e.c.records_bad == 0 and e.c.internal_errors == 0
        e.step(0)
        recv_exact(o.peer, channel.MSG_SIZE)  # its CLIENT_DEL
        assert nothing_pending(o.peer)
    finally:
        o.close()


def test_without_a_hello_no_client_del_is_ever_sent() -> None:
    """An intercept (or an older nfreplay-assist) never answers the offer: it is sent the
    tcpcopy protocol only, CLIENT_ADDs."""
    from tests.unit.sockets import nothing_pending, recv_exact
    from tests.unit.engine.loopback import (
        PARAMS, TISN, Online, frame, steps, target_record,
    )

    o = Online()
    try:
        o.up()
        e = o.e
        o.capture.put(frame(tcpip.SYN, 100))
        steps(e, lambda: len(o.sender.sent) == 1, "the SYN sent")
        recv_exact(o.peer, channel.MSG_SIZE)
        o.send_records(target_record(tcpip.SYN | ACK, TISN, 101))
        steps(e, lambda: len(o.sender.sent) == 2, "the handshake's ACK")
        o.capture.put(frame(ACK | FIN, 101, 1))
        o.clock.t += PARAMS.response_timeout  # no greeting came: the FIN may go
        steps(e, lambda: len(o.sender.sent) == 3, "the FIN sent")
        o.send_records(target_record(ACK | FIN, TISN + 1, 102))
        steps(e, lambda: e.c.sessions_completed == 1, "the session completed")
        for _ in range(5):
            e.step(0)
        assert nothing_pending(o.peer)
    finally:
        o.close()


def test_a_session_over_is_withdrawn_before_the_next_one_on_its_port_is_announced() -> None:
    """The client reuses its port while the old replay ends: in the wake-up where the old one
    completes and the new one starts, CLIENT_DEL goes first, so the assistant does not free
    the route under the new session."""
    from tests.unit.sockets import recv_exact
    from tests.unit.engine.loopback import (
        CPORT, PARAMS, TISN, Online, frame, steps, target_record,
    )

    o = Online()
    try:
        o.up()
        e = o.e
        o.send_records(channel.encode_notice(channel.NOTICE_HELLO))
        steps(e, lambda: o.assistant.ready[0].notices, "the hello read")
        o.capture.put(frame(tcpip.SYN, 100))
        steps(e, lambda: len(o.sender.sent) == 1, "the SYN sent")
        assert recv_exact(o.peer, channel.MSG_SIZE) == ADD
        o.send_records(target_record(tcpip.SYN | ACK, TISN, 101))
        steps(e, lambda: len(o.sender.sent) == 2, "the handshake's ACK")
        o.capture.put(frame(ACK | FIN, 101, 1))
        o.clock.t += PARAMS.response_timeout
        steps(e, lambda: len(o.sender.sent) == 3, "the FIN sent")
        # Both at once: the client's next SYN on the port, and the target's FIN-ACK.
        o.capture.put(frame(tcpip.SYN, 90_000))
        o.send_records(target_record(ACK | FIN, TISN + 1, 102))
        steps(e, lambda: e.c.sessions_completed == 1 and len(o.sender.sent) == 5,
              "the old one completed (its last ACK), the new SYN sent")
        assert recv_exact(o.peer, 2 * channel.MSG_SIZE) == DEL + ADD
        last_ack, syn = (tcpip.parse(p) for p in o.sender.sent[3:])
        assert (last_ack.flags, syn.flags, syn.seq, syn.sport) == (ACK, tcpip.SYN, 90_000, CPORT)
    finally:
        o.close()


def test_both_stats_lines_show_sessions_collided() -> None:
    from nfreplay.cli import assist, online

    for line in (online.STATS_LINE, assist.STATS_LINE):
        assert ("collided", "sessions_collided", False) in line
