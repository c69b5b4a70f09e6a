"""Transcripts of the session machine with the CLIENT's sequence numbers wrapping at 2**32.

Client sequence numbers are never translated (the target sees the client's own ISN), so every
comparison the machine makes on them (in order, duplicate, overlap, acknowledged, FIN after
the data) must work modulo 2**32. test_machine.py puts the target's ISN near the wrap; here
the client's is, and the target's is far from it. Each transcript runs with a control ISN far
from the wrap and with ISNs that put the wrap at a different step of it; the expected packets
are written relative to the ISN, so the wrapped runs must match the control run exactly.

The packet builders and the table come from test_machine.py."""

from __future__ import annotations

import pytest

from nfreplay.proto import checksum, tcpip
from nfreplay.proto.tcpip import ACK, FIN, PSH, RST, SYN, ip2int
from nfreplay.session.machine import Announce, Params
from tests.unit.session import transcript
from tests.unit.session.transcript import record

CLIENT = ip2int("198.18.1.10")
CPORT = 40000
ONLINE = ip2int("198.18.0.2")
TARGET = ip2int("198.18.0.3")
TPORT = 8080
TISN = 7_000_000  # the target's ISN, far from the wrap: only the client's space wraps
T1 = TISN + 1
OSEQ = 5_000  # the online server's ISN (client ACKs live in this space)
PARAMS = Params(target_ip=TARGET, target_port=TPORT, response_quiet=0.1,
                response_timeout=3.0, session_timeout=60.0, syn_rto=1.0, syn_retries=2,
                rto_min=0.2, rto_max=1.0, linger=2.0, ack_delay=0.0)
M = 2**32

# The control run, then the wrap (sequence number 0) at: a byte inside the request (0xF0),
# the ACK of the FIN (0xEC: the FIN is the last number), the FIN (0xED), the first data byte
# (0xFF: the SYN is the last number), the first byte after a reconnect's faked SYN (0xEB),
# inside the first 10-byte segment (0xF8: the next one starts at 3).
ISNS = [1_000_000, 0xFFFFFFF0, 0xFFFFFFEC, 0xFFFFFFED, 0xFFFFFFFF, 0xFFFFFFEB, 0xFFFFFFF8]
wrap = pytest.mark.parametrize("isn", ISNS, ids=[f"isn={i:#x}" for i in ISNS])


def view(pkt: bytearray) -> tuple[int, int, int, int]:
    """(flags, seq, ack, payload_len) of an emitted packet, addresses and checksum verified."""
    assert checksum.verify(pkt), "emitted packet has a bad checksum"
    s = tcpip.parse(pkt)
    assert (s.src, s.sport, s.dst, s.dport) == (CLIENT, CPORT, TARGET, TPORT)
    return s.flags, s.seq, s.ack, s.payload_len


class Lab(transcript.Lab):
    """test_machine's table and clock, for a client whose ISN is `isn`. `s(k)` is the
    client's sequence number k bytes after its ISN."""

    def __init__(self, isn: int, params: Params = PARAMS) -> None:
        super().__init__(params)
        self.isn = isn

    def s(self, k: int) -> int:
        return (self.isn + k) % M

    def established(self) -> None:
        s = self.s
        out = self.cl(SYN, self.isn)
        assert out[0] == Announce(CLIENT, CPORT)
        assert [view(p) for p in out[1:]] == [(SYN, self.isn, 0, 0)]
        out = self.rec(SYN | ACK, TISN, s(1))
        assert [view(p) for p in out] == [(ACK, s(1), T1, 0)]
        assert self.cl(ACK, s(1), OSEQ + 1) == []  # the client's own handshake ACK


@wrap
def test_handshake_request_response_and_close_across_the_wrap(isn: int) -> None:
    lab = Lab(isn)
    s = lab.s
    lab.established()
    out = lab.cl(ACK | PSH, s(1), OSEQ + 1, b"GET / HTTP/1.1\r\n\r\n")
    assert [view(p) for p in out] == [(ACK | PSH, s(1), T1, 18)]
    assert bytes(out[0][-18:]) == b"GET / HTTP/1.1\r\n\r\n"
    assert lab.rec(ACK, T1, s(19)) == []  # the target acknowledges the whole request
    out: list = []
    lab.t.response(record(ACK, T1, s(19), 200), lab.now, out)
    lab.t.response(record(ACK | PSH, T1 + 200, s(19), 100), lab.now, out)
    lab.t.flush(lab.now, out)
    assert [view(p) for p in out] == [(ACK, s(19), T1 + 300, 0)]
    # The client read the online server's 300 bytes and closes: its FIN goes at once.
    out = lab.cl(FIN | ACK, s(19), OSEQ + 301)
    assert [view(p) for p in out] == [(FIN | ACK, s(19), T1 + 300, 0)]
    out = lab.rec(FIN | ACK, T1 + 300, s(20))  # acknowledges our FIN
    assert [view(p) for p in out] == [(ACK, s(20), T1 + 301, 0)]
    c = lab.c
    assert (c.sessions_completed, c.sessions_live, c.requests_sent, c.responses_complete,
            c.retransmits, c.fins_sent) == (1, 0, 1, 1, 0, 1)
    assert lab.advance(10.0) == [] and len(lab.t) == 0  # lingered, removed, nothing resent


@wrap
def test_a_late_retransmission_after_the_close_is_not_a_new_connection(isn: int) -> None:
    """The request captured again after the session completed lies before what was sent
    (across the wrap for some ISNs): it belongs to the finished session, it does not start
    a mid-stream join."""
    from nfreplay.session.table import MIDSTREAM_WAIT

    lab = Lab(isn)
    s = lab.s
    lab.established()
    lab.cl(ACK | PSH, s(1), OSEQ + 1, b"GET / HTTP/1.1\r\n\r\n")
    lab.rec(ACK | PSH, T1, s(19), 300)
    lab.cl(FIN | ACK, s(19), OSEQ + 301)
    lab.rec(FIN | ACK, T1 + 300, s(20))
    assert lab.c.sessions_completed == 1
    assert lab.cl(ACK | PSH, s(1), OSEQ + 1, b"GET / HTTP/1.1\r\n\r\n") == []
    assert lab.c.packets_no_session == 1
    assert lab.advance(MIDSTREAM_WAIT + 1.0) == []
    c = lab.c
    assert (c.sessions_opened, c.midstream_unconfirmed, c.sessions_midstream) == (1, 0, 0)


@wrap
def test_out_of_order_duplicate_and_overlap_across_the_wrap(isn: int) -> None:
    lab = Lab(isn)
    s = lab.s
    lab.established()
    assert lab.cl(ACK, s(11), OSEQ + 1, b"b" * 10) == []  # after a gap: held
    out = lab.cl(ACK, s(1), OSEQ + 1, b"a" * 10)  # the gap fills: both go, in order
    assert [view(p) for p in out] == [(ACK, s(1), T1, 10), (ACK, s(11), T1, 10)]
    assert [bytes(p[-10:]) for p in out] == [b"a" * 10, b"b" * 10]
    assert lab.cl(ACK, s(11), OSEQ + 1, b"b" * 10) == []  # an exact retransmission
    assert lab.cl(ACK, s(1), OSEQ + 1, b"a" * 5) == []  # an old part of one
    assert lab.c.client_duplicates == 2
    out = lab.cl(ACK, s(16), OSEQ + 1, b"c" * 10)  # 5 old bytes, 5 new
    assert [view(p) for p in out] == [(ACK, s(21), T1, 5)]
    assert bytes(out[0][-5:]) == b"ccccc" and lab.c.client_trimmed == 1
    (sess,) = lab.t.sessions.values()
    assert sess.snd_nxt == s(26) and sess.pending_bytes == 0


@wrap
def test_retransmission_and_partial_acks_across_the_wrap(isn: int) -> None:
    lab = Lab(isn)
    s = lab.s
    lab.established()
    out = lab.cl(ACK, s(1), OSEQ + 1, b"a" * 10) + lab.cl(ACK | PSH, s(11), OSEQ + 1, b"b" * 10)
    assert [view(p) for p in out] == [(ACK, s(1), T1, 10), (ACK | PSH, s(11), T1, 10)]
    assert lab.rec(ACK, T1, s(11)) == []  # only the first segment arrived
    out = lab.advance(0.2)  # RTO: the first unacknowledged segment, once
    assert [view(p) for p in out] == [(ACK | PSH, s(11), T1, 10)]
    assert lab.advance(0.3) == []
    out = lab.advance(0.11)  # backed off to 0.4 s
    assert [view(p) for p in out] == [(ACK | PSH, s(11), T1, 10)]
    assert lab.rec(ACK, T1, s(11)) == []  # an old ACK (before the wrap, for some ISNs)
    assert lab.rec(ACK, T1, s(21)) == []  # everything acknowledged
    assert lab.advance(5.0) == []
    (sess,) = lab.t.sessions.values()
    assert lab.c.retransmits == 2 and not sess.unacked and sess.t_una == s(21)


@wrap
def test_fin_waits_for_the_target_to_acknowledge_the_data_across_the_wrap(isn: int) -> None:
    lab = Lab(isn)
    s = lab.s
    lab.established()
    lab.cl(ACK | PSH, s(1), OSEQ + 1, b"q" * 10)
    # The client closes after a 40-byte answer, but the target has acknowledged nothing yet.
    assert lab.cl(FIN | ACK, s(11), OSEQ + 41) == []
    assert lab.rec(ACK, T1, s(6)) == []  # half of the request: the FIN still waits
    out = lab.rec(ACK | PSH, T1, s(11), 40)  # all of it, and the whole answer: FIN goes
    assert [view(p) for p in out] == [(FIN | ACK, s(11), T1 + 40, 0)]
    out = lab.rec(FIN | ACK, T1 + 40, s(12))
    assert [view(p) for p in out] == [(ACK, s(12), T1 + 41, 0)]
    assert lab.c.sessions_completed == 1 and lab.c.fins_sent == 1


@wrap
def test_client_rst_across_the_wrap_waits_for_the_response_then_goes(isn: int) -> None:
    lab = Lab(isn)
    s = lab.s
    lab.established()
    lab.cl(ACK | PSH, s(1), OSEQ + 1, b"q" * 10)
    assert lab.cl(RST | ACK, s(11), OSEQ + 1) == []
    out = lab.rec(ACK, T1, s(11), 30)
    assert [view(p) for p in out] == [(ACK, s(11), T1 + 30, 0)]
    out = lab.advance(0.15)  # the response is quiet: complete, the RST goes
    assert [view(p) for p in out] == [(RST | ACK, s(11), T1 + 30, 0)]
    assert lab.c.sessions_client_reset == 1 and lab.c.sessions_live == 0


@wrap
def test_midstream_session_across_the_wrap_gets_its_faked_syn_at_isn(isn: int) -> None:
    """Joined mid-stream: the faked SYN goes at the first data byte - 1 (modulo 2**32: for
    data at 0 it is 0xFFFFFFFF), and the joining evidence is a continuation across the wrap."""
    lab = Lab(isn)
    s = lab.s
    assert lab.cl(ACK | PSH, s(1), OSEQ + 1, b"a" * 10) == []  # held: no evidence yet
    out = lab.cl(ACK | PSH, s(11), OSEQ + 1, b"b" * 10)  # continues it exactly
    assert out[0] == Announce(CLIENT, CPORT)
    assert [view(p) for p in out[1:]] == [(SYN, isn, 0, 0)]
    out = lab.rec(SYN | ACK, TISN, s(1))
    assert [view(p) for p in out] == [(ACK | PSH, s(1), T1, 10), (ACK | PSH, s(11), T1, 10)]
    assert [bytes(p[-10:]) for p in out] == [b"a" * 10, b"b" * 10]
    assert lab.c.sessions_midstream == 1 and lab.c.midstream_unconfirmed == 0


@wrap
def test_target_reset_reconnects_for_data_never_sent_across_the_wrap(isn: int) -> None:
    """After a target RST, a request sent and never seen acknowledged is not sent again (it
    may have been processed); one never sent starts a new connection on the same port, its
    faked SYN just before it. "Never acknowledged" is decided across the wrap."""
    lab = Lab(isn)
    s = lab.s
    lab.established()
    lab.cl(ACK | PSH, s(1), OSEQ + 1, b"a" * 10)
    lab.rec(ACK, T1, s(11), 30)
    out = lab.cl(ACK | PSH, s(11), OSEQ + 31, b"b" * 10)  # the second request goes at once
    assert [view(p) for p in out] == [(ACK | PSH, s(11), T1 + 30, 10)]
    assert lab.cl(ACK | PSH, s(21), OSEQ + 61, b"c" * 10) == []  # the third waits a reply
    out = lab.rec(RST, T1 + 30, 0)  # the target drops it, the second never acknowledged
    assert [type(x).__name__ for x in out] == ["bytearray", "Announce", "bytearray"]
    assert view(out[0])[:2] == (RST | ACK, s(21))  # ends the old one after all it sent
    assert view(out[2]) == (SYN, s(20), 0, 0)
    out = lab.rec(SYN | ACK, 9000, s(21))
    assert [view(p) for p in out] == [(ACK | PSH, s(21), 9001, 10)]
    assert bytes(out[0][-10:]) == b"c" * 10
    c = lab.c
    assert (c.reconnects, c.resends_withheld, c.sessions_target_reset) == (1, 1, 0)


@wrap
def test_target_reset_with_only_unacked_data_ends_across_the_wrap(isn: int) -> None:
    lab = Lab(isn)
    s = lab.s
    lab.established()
    lab.cl(ACK | PSH, s(1), OSEQ + 1, b"a" * 10)
    lab.rec(ACK, T1, s(11), 30)
    lab.cl(ACK | PSH, s(11), OSEQ + 31, b"b" * 10)
    assert lab.rec(RST, T1 + 30, 0) == []
    c = lab.c
    assert (c.reconnects, c.resends_withheld, c.sessions_target_reset) == (0, 1, 1)


@wrap
def test_reused_port_with_a_new_isn_across_the_wrap_is_the_next_connection(isn: int) -> None:
    """A client reusing its port picks a new ISN; when the old one sits just below 2**32 and
    the new one just above 0, the new SYN is still a new connection, not an old packet."""
    lab = Lab(isn)
    s = lab.s
    lab.established()
    lab.cl(ACK | PSH, s(1), OSEQ + 1, b"q" * 10)
    lab.rec(FIN | ACK, T1, s(11), 20)
    new = s(700_000)
    assert lab.cl(SYN, new) == []  # waits: the old replay still has its FIN to exchange
    out = lab.cl(FIN | ACK, s(11), OSEQ + 22)
    assert [view(p) for p in out] == [(FIN | ACK, s(11), T1 + 21, 0)]
    out = lab.rec(ACK, T1 + 21, s(12))
    assert lab.c.sessions_completed == 1
    assert out[-2] == Announce(CLIENT, CPORT) and view(out[-1]) == (SYN, new, 0, 0)
