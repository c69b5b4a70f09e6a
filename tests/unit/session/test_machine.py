"""Transcripts of the session machine: events in, exact packets out, with a fake clock."""

from __future__ import annotations

import dataclasses
import math
import os
import signal
import time

import pytest

from nfreplay.proto import checksum, tcpip
from nfreplay.proto.tcpip import ACK, FIN, PSH, RST, SYN
from nfreplay.session.machine import Announce, Counters, Params
from nfreplay.session.table import SLOTS_PER_SECOND, TIMER_GRAIN

from tests.unit.session.transcript import (
    CLIENT, CPORT, ISN, OSEQ, PARAMS, T1, TARGET, TISN, TPORT, Lab, client, record, ts_opt, view,
)  # fmt: skip



def test_handshake_request_response_and_close() -> None:
    lab = Lab()
    lab.established()
    out = lab.cl(ACK | PSH, ISN + 1, OSEQ + 1, b"GET / HTTP/1.1\r\n\r\n")
    assert [view(p)[:6] for p in out] == [(TARGET, TPORT, ACK | PSH, ISN + 1, T1, 18)]
    # The target acknowledges and answers 300 bytes in two records: one ACK for the wake-up.
    out = lab.rec(ACK, T1, ISN + 19)
    assert out == []
    out: list = []
    lab.t.response(record(ACK, T1, ISN + 19, 200), lab.now, out)
    lab.t.response(record(ACK | PSH, (T1 + 200) % 2**32, ISN + 19, 100), lab.now, out)
    lab.t.flush(lab.now, out)
    assert [view(p)[2:6] for p in out] == [(ACK, ISN + 19, (T1 + 300) % 2**32, 0)]
    # Client closes after reading the online server's 300-byte answer: FIN goes at once
    # (everything before it was acknowledged and the response is complete by byte count).
    out = lab.cl(FIN | ACK, ISN + 19, OSEQ + 301)
    assert [view(p)[2:5] for p in out] == [(FIN | ACK, ISN + 19, (T1 + 300) % 2**32)]
    out = lab.rec(FIN | ACK, (T1 + 300) % 2**32, ISN + 20)
    assert [view(p)[2:5] for p in out] == [(ACK, ISN + 20, (T1 + 301) % 2**32)]
    assert lab.c.sessions_completed == 1 and lab.c.sessions_live == 0
    assert lab.c.requests_sent == 1 and lab.c.responses_complete == 1


def test_next_request_released_when_target_sent_as_much_as_online() -> None:
    lab = Lab()
    lab.established()
    lab.cl(ACK | PSH, ISN + 1, OSEQ + 1, b"a" * 10)
    lab.rec(ACK, T1, ISN + 11, 50)
    # The client's ACK says the online server answered 80 bytes: the target sent only 50.
    assert lab.cl(ACK | PSH, ISN + 11, OSEQ + 81, b"b" * 10) == []
    out = lab.rec(ACK, (T1 + 50) % 2**32, ISN + 11, 30)
    # 80 bytes reached: the held request goes, carrying the ACK (no separate pure ACK).
    assert [view(p)[2:6] for p in out] == [(ACK | PSH, ISN + 11, (T1 + 80) % 2**32, 10)]
    assert lab.c.requests_sent == 2


def test_held_request_released_after_quiet_period_when_target_answers_less() -> None:
    lab = Lab()
    lab.established()
    lab.cl(ACK | PSH, ISN + 1, OSEQ + 1, b"a" * 10)
    lab.rec(ACK, T1, ISN + 11, 50)
    assert lab.cl(ACK | PSH, ISN + 11, OSEQ + 81, b"b" * 10) == []
    assert lab.advance(0.05) == []
    out = lab.advance(0.06)
    assert [view(p)[2:6] for p in out] == [(ACK | PSH, ISN + 11, (T1 + 50) % 2**32, 10)]


def test_request_without_any_response_waits_response_timeout() -> None:
    lab = Lab()
    lab.established()
    lab.cl(ACK | PSH, ISN + 1, OSEQ + 1, b"a" * 10)
    lab.rec(ACK, T1, ISN + 11)
    assert lab.cl(ACK | PSH, ISN + 11, OSEQ + 81, b"b" * 10) == []
    assert lab.advance(2.9) == []
    out = lab.advance(0.2)
    assert [view(p)[3] for p in out] == [ISN + 11]
    assert lab.c.responses_timed_out == 1


def test_pipelined_and_continuation_segments_go_at_once() -> None:
    lab = Lab()
    lab.established()
    a = lab.cl(ACK, ISN + 1, OSEQ + 1, b"x" * 100)
    b = lab.cl(ACK | PSH, ISN + 101, OSEQ + 1, b"y" * 50)  # same client ACK: same request
    c = lab.cl(ACK | PSH, ISN + 151, OSEQ + 1, b"z" * 20)  # pipelined: still the same ACK
    assert [view(p)[3] for p in a + b + c] == [ISN + 1, ISN + 101, ISN + 151]
    assert lab.c.requests_sent == 1


def test_out_of_order_duplicate_and_overlap() -> None:
    lab = Lab()
    lab.established()
    assert lab.cl(ACK, ISN + 11, OSEQ + 1, b"b" * 10) == []  # gap: held
    out = lab.cl(ACK, ISN + 1, OSEQ + 1, b"a" * 10)
    assert [view(p)[3] for p in out] == [ISN + 1, ISN + 11]
    assert lab.cl(ACK, ISN + 1, OSEQ + 1, b"a" * 10) == []  # exact retransmission
    assert lab.c.client_duplicates == 1
    out = lab.cl(ACK, ISN + 16, OSEQ + 1, b"c" * 10)  # 5 old bytes, 5 new
    assert [view(p)[3:6] for p in out] == [(ISN + 21, T1, 5)]
    assert bytes(out[0][-5:]) == b"ccccc"
    assert lab.c.client_trimmed == 1


def test_fin_waits_for_target_to_ack_data() -> None:
    lab = Lab()
    lab.established()
    lab.cl(ACK | PSH, ISN + 1, OSEQ + 1, b"q" * 10)
    lab.rec(ACK, T1, ISN + 11, 40)
    assert lab.cl(FIN | ACK, ISN + 11, OSEQ + 1) == []  # same ACK: response still pending
    out = lab.advance(0.15)  # quiet period over: the response is complete, FIN goes
    assert [view(p)[2:4] for p in out] == [(FIN | ACK, ISN + 11)]


def test_target_fin_first_then_client_fin_completes() -> None:
    lab = Lab()
    lab.established()
    lab.cl(ACK | PSH, ISN + 1, OSEQ + 1, b"q" * 10)
    out = lab.rec(FIN | ACK, T1, ISN + 11, 20)  # answer and close (Connection: close)
    assert [view(p)[2:5] for p in out] == [(ACK, ISN + 11, (T1 + 21) % 2**32)]
    out = lab.cl(FIN | ACK, ISN + 11, OSEQ + 22)
    assert [view(p)[2:4] for p in out] == [(FIN | ACK, ISN + 11)]
    out = lab.rec(ACK, (T1 + 21) % 2**32, ISN + 12)
    assert out == []  # our FIN already acknowledged the target's: nothing more to say
    assert lab.c.sessions_completed == 1


def test_client_rst_held_until_response_then_forwarded() -> None:
    lab = Lab()
    lab.established()
    lab.cl(ACK | PSH, ISN + 1, OSEQ + 1, b"q" * 10)
    assert lab.cl(RST | ACK, ISN + 11, OSEQ + 1) == []
    out = lab.rec(ACK, T1, ISN + 11, 30)
    assert out != [] and all(view(p)[2] != RST | ACK for p in out)
    out = lab.advance(0.15)
    assert [view(p)[2:4] for p in out] == [(RST | ACK, ISN + 11)]
    assert lab.c.sessions_client_reset == 1


def test_target_reset_ends_session() -> None:
    lab = Lab()
    lab.established()
    assert lab.rec(RST | ACK, T1, ISN + 1) == []
    assert lab.c.sessions_target_reset == 1 and lab.c.sessions_live == 0


def test_syn_retransmitted_then_handshake_fails() -> None:
    lab = Lab()
    lab.cl(SYN, ISN)
    out = lab.advance(1.0)
    # Each retry is announced again (its first CLIENT_ADD may not have been queued).
    assert out[0] == Announce(CLIENT, CPORT) and [view(p)[2:4] for p in out[1:]] == [(SYN, ISN)]
    assert lab.advance(1.5) == []
    out = lab.advance(0.5)  # second retry after 2 s of backoff
    assert out[0] == Announce(CLIENT, CPORT) and [view(p)[2:4] for p in out[1:]] == [(SYN, ISN)]
    lab.advance(4.0)
    assert lab.c.sessions_handshake_failed == 1 and lab.c.syn_retransmits == 2


def test_timers_fire_at_their_time_or_within_a_grain_never_before() -> None:
    """Timers live in slots of TIMER_GRAIN: the SYN's 1 s retry, armed at a time that is no
    whole millisecond, is not due a moment before 1 s and runs within a grain after."""
    lab = Lab()
    lab.now = 100.0004
    lab.cl(SYN, ISN)
    assert lab.advance(0.9999) == []
    assert 101.0004 <= lab.t.next_wake() <= 101.0004 + TIMER_GRAIN
    lab.now = lab.t.next_wake() - 1e-9
    assert lab.advance(0.0) == []
    lab.now = lab.t.next_wake()
    out = lab.advance(0.0)
    assert [view(p)[2:4] for p in out[1:]] == [(SYN, ISN)] and lab.c.syn_retransmits == 1


def test_a_timer_a_rounding_error_early_never_spins() -> None:
    """A tick at a time that is a hair (one float step) before a timer's own, yet in its
    slot: the session finds nothing to do and must go to a later slot, not back into the one
    being run (which would loop forever). Run in a child process, so a regression fails the
    test instead of hanging it."""
    wake = 100.058  # wake * 1000 is a whole number, and so is the step below it times 1000
    early = math.nextafter(wake, 0.0)
    assert early < wake and early * SLOTS_PER_SECOND == wake * SLOTS_PER_SECOND
    pid = os.fork()
    if pid == 0:  # the child: exit 0 only if all went as it should
        ok = False
        try:
            lab = Lab()
            lab.cl(SYN, ISN)
            session = lab.t.sessions[(CLIENT << 16) | CPORT]
            session.syn_deadline = session.wake = wake  # the SYN's retry is due at `wake`
            lab.t._schedule(session)
            lab.now = early
            quiet = lab.advance(0.0) == []
            lab.now = wake + TIMER_GRAIN
            again = lab.advance(0.0)
            ok = quiet and [view(p)[2:4] for p in again[1:]] == [(SYN, ISN)]
        finally:
            os._exit(0 if ok else 1)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            assert os.waitstatus_to_exitcode(status) == 0
            return
        time.sleep(0.01)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    raise AssertionError("the tick never returned: a timer spins in its own slot")


def test_superseded_timer_entries_are_dropped_when_they_dominate() -> None:
    """A session moved to an earlier slot leaves its old entry behind; the lists are swept
    once the superseded entries outnumber the live ones 4 to 1 (plus 1024), so a session
    rescheduled over and over holds no growing memory, and still fires once."""
    lab = Lab()
    lab.cl(SYN, ISN)  # its retry is due at 101.0
    s = lab.t.sessions[(CLIENT << 16) | CPORT]
    wake = s.wake
    most = 0
    for i in range(5000):
        s.wake = 100.999 - i * 0.001  # each one earlier than the last, in a slot of its own
        lab.t._schedule(s)
        most = max(most, lab.t._queued)
    assert lab.t._entries == 1 and most <= 4 * 1 + 1024 + 1
    assert len(lab.t._slot_heap) == len(lab.t._slots) <= lab.t._queued
    s.wake = wake
    assert lab.advance(0.0) == []  # the live entry (long due) finds nothing to do yet
    out = lab.advance(1.0 + TIMER_GRAIN)
    assert [view(p)[2:4] for p in out[1:]] == [(SYN, ISN)] and lab.c.syn_retransmits == 1


def test_unacked_data_retransmitted_with_backoff() -> None:
    lab = Lab()
    lab.established()
    lab.cl(ACK | PSH, ISN + 1, OSEQ + 1, b"q" * 10)
    out = lab.advance(0.2)
    assert [view(p)[3:6] for p in out] == [(ISN + 1, T1, 10)]
    assert lab.advance(0.3) == []
    assert len(lab.advance(0.11)) == 1  # 0.4 s backoff
    lab.rec(ACK, T1, ISN + 11)
    assert lab.advance(2.0) == []
    assert lab.c.retransmits == 2


def test_window_respected() -> None:
    lab = Lab()
    lab.established()
    lab.rec(ACK, T1, ISN + 1, window=15)  # target advertises 15 bytes (no scaling)
    out = lab.cl(ACK, ISN + 1, OSEQ + 1, b"a" * 10)
    assert len(out) == 1
    assert lab.cl(ACK, ISN + 11, OSEQ + 1, b"b" * 10) == []  # 20 > 15 in flight
    out = lab.rec(ACK, T1, ISN + 11, window=15)
    assert [view(p)[3] for p in out] == [ISN + 11]


def test_window_scale_from_syn_ack() -> None:
    lab = Lab()
    lab.established(sa_opts=b"\x01\x03\x03\x04")  # wscale 4
    lab.rec(ACK, T1, ISN + 1, window=2)  # 2 << 4 = 32 bytes
    assert len(lab.cl(ACK, ISN + 1, OSEQ + 1, b"a" * 30)) == 1


def test_timestamps_echo_target_tsval() -> None:
    lab = Lab()
    lab.established(opts=ts_opt(777, 0), sa_opts=ts_opt(123456, 777))
    out = lab.cl(ACK | PSH, ISN + 1, OSEQ + 1, b"q", opts=ts_opt(780, 999))
    assert tcpip.timestamps(tcpip.parse(out[0])) == (780, 123456)
    assert checksum.verify(out[0])
    lab.rec(ACK, T1, ISN + 2, 5, opts=ts_opt(123500, 780))
    out: list = []
    lab.t.flush(lab.now, out)
    lab.rec(ACK, (T1 + 5) % 2**32, ISN + 2, 5, opts=ts_opt(123501, 780))
    out = lab.advance(0.0)
    seg, pkt = client(ACK | PSH, ISN + 2, OSEQ + 10, b"r", ts_opt(790, 1))
    o2: list = []
    lab.t.client_packet(seg, pkt, lab.now, o2)
    assert tcpip.timestamps(tcpip.parse(o2[0])) == (790, 123501)


def test_idle_session_times_out_with_reset() -> None:
    lab = Lab()
    lab.established()
    out = lab.advance(60.0)
    assert [view(p)[2] for p in out] == [RST | ACK]
    assert lab.c.sessions_timed_out == 1


def test_packets_without_session_are_counted_not_replayed() -> None:
    lab = Lab()
    assert lab.cl(ACK, ISN + 1, OSEQ + 1) == []  # a pure ACK of an unknown connection
    assert lab.cl(FIN | ACK, ISN + 1, OSEQ + 1) == []
    assert lab.c.packets_no_session == 2 and lab.c.sessions_opened == 0


def test_reused_port_waits_for_previous_replay_then_starts() -> None:
    lab = Lab()
    lab.established()
    lab.cl(ACK | PSH, ISN + 1, OSEQ + 1, b"q" * 10)
    lab.rec(FIN | ACK, T1, ISN + 11, 20)
    # The client already closed and reconnected on the same port: the new connection (and
    # its request) wait while the old replay still has its FIN to exchange.
    new = ISN + 700_000
    assert lab.cl(SYN, new) == []
    assert lab.cl(ACK | PSH, new + 1, 9000, b"next") == []
    out = lab.cl(FIN | ACK, ISN + 11, OSEQ + 22)  # the old connection's FIN, captured late
    assert [view(p)[2:4] for p in out] == [(FIN | ACK, ISN + 11)]
    out = lab.rec(ACK, (T1 + 21) % 2**32, ISN + 12)
    assert lab.c.sessions_completed == 1
    assert out[-2] == Announce(CLIENT, CPORT) and view(out[-1])[2:4] == (SYN, new)
    out = lab.rec(SYN | ACK, 42, new + 1)
    assert [view(p)[2:6] for p in out] == [(ACK | PSH, new + 1, 43, 4)]  # completes the handshake


def test_a_waiting_next_connection_holds_a_bounded_number_of_packets() -> None:
    from nfreplay.session.table import MAX_HELD_PACKETS

    lab = Lab()
    lab.established()
    new = ISN + 700_000
    assert lab.cl(SYN, new) == []
    for i in range(MAX_HELD_PACKETS + 50):  # a client sending on while the old replay ends
        assert lab.cl(ACK | PSH, new + 1 + 10 * i, 9000, b"d" * 10) == []
    held = lab.t._held[(CLIENT << 16) | CPORT]
    assert len(held) == MAX_HELD_PACKETS and lab.c.held_overflow == 51


def test_reused_port_supersedes_a_replay_that_does_not_finish() -> None:
    lab = Lab()
    lab.established()
    assert lab.cl(SYN, ISN + 500_000) == []
    out = lab.advance(PARAMS.successor_wait)
    assert [type(x).__name__ for x in out] == ["bytearray", "Announce", "bytearray"]
    assert view(out[0])[2] == RST | ACK and view(out[2])[2:4] == (SYN, ISN + 500_000)
    assert lab.c.sessions_superseded == 1


def test_finished_session_lingers_then_is_removed_and_reacks_target_fin() -> None:
    lab = Lab()
    lab.established()
    lab.rec(FIN | ACK, T1, ISN + 1)
    lab.cl(FIN | ACK, ISN + 1, OSEQ + 2)
    lab.rec(ACK, (T1 + 1) % 2**32, ISN + 2)
    assert lab.c.sessions_completed == 1
    out = lab.rec(FIN | ACK, T1, ISN + 2)  # the target lost our last ACK
    assert [view(p)[2] for p in out] == [ACK]
    lab.advance(2.1)
    assert len(lab.t) == 0


def test_shutdown_resets_live_sessions() -> None:
    lab = Lab()
    lab.established()
    out: list = []
    lab.t.shutdown(lab.now, out)
    assert [view(p)[2] for p in out] == [RST | ACK]
    assert lab.c.sessions_shutdown == 1 and lab.c.sessions_live == 0


def test_client_syn_retransmission_is_not_forwarded_twice() -> None:
    lab = Lab()
    lab.cl(SYN, ISN)
    assert lab.cl(SYN, ISN) == []
    assert lab.c.sessions_opened == 1


@pytest.mark.parametrize("isn", [2**32 - 5, 2**32 - 1])
def test_sequence_wrap_in_client_space(isn: int) -> None:
    lab = Lab()
    lab.cl(SYN, isn)
    lab.rec(SYN | ACK, TISN, (isn + 1) % 2**32)
    out = lab.cl(ACK, (isn + 1) % 2**32, OSEQ + 1, b"w" * 10)
    assert [view(p)[3] for p in out] == [(isn + 1) % 2**32]
    out = lab.cl(ACK, (isn + 11) % 2**32, OSEQ + 1, b"w" * 10)
    assert [view(p)[3] for p in out] == [(isn + 11) % 2**32]


def test_stale_connection_on_target_is_reset_and_syn_offered_again() -> None:
    lab = Lab()
    lab.cl(SYN, ISN)
    # The target still has an older connection on this 4-tuple and answers with a plain ACK.
    out = lab.rec(ACK, 777, 12345)
    assert [view(p)[2:5] for p in out] == [(RST, 12345, 0), (SYN, ISN, 0)]
    assert lab.c.stale_resets == 1
    out = lab.rec(SYN | ACK, TISN, ISN + 1)
    assert [view(p)[2] for p in out] == [ACK] and lab.c.sessions_established == 1


def test_pure_acks_carry_current_timestamps_and_valid_checksums() -> None:
    lab = Lab()
    lab.established(opts=ts_opt(777, 0), sa_opts=ts_opt(123456, 777))
    lab.cl(ACK | PSH, ISN + 1, OSEQ + 1, b"q", opts=ts_opt(780, 999))
    acks = []
    for i, tsval in enumerate((123500, 123600, 123700)):
        lab.cl(ACK, ISN + 2, OSEQ + 1, opts=ts_opt(781 + i, 1))  # client pure ACK: new TSval
        acks += lab.rec(ACK, (T1 + 10 * i) % 2**32, ISN + 2, 10, opts=ts_opt(tsval, 780))
    assert [view(p)[2:6] for p in acks] == [(ACK, ISN + 2, (T1 + 10 * (i + 1)) % 2**32, 0)
                                            for i in range(3)]
    assert [tcpip.timestamps(tcpip.parse(p)) for p in acks] == [
        (781, 123500), (782, 123600), (783, 123700)]


# ----------------------------------------------------------------- issue 3 behaviours

def mss_only(pkt: bytearray) -> bool:
    return tcpip.options(tcpip.parse(pkt)) == [(tcpip.OPT_MSS, (1460).to_bytes(2, "big"))]


def test_midstream_session_gets_a_faked_handshake() -> None:
    lab = Lab()
    # Held until the connection proves real: the client acknowledges production's answer.
    assert lab.cl(ACK | PSH, ISN + 1, OSEQ + 1, b"GET /mid HTTP/1.1\r\n\r\n") == []
    out = lab.cl(ACK, ISN + 22, OSEQ + 101)
    assert out[0] == Announce(CLIENT, CPORT)
    syn = tcpip.parse(out[1])
    assert (syn.flags, syn.seq, syn.window) == (SYN, ISN, 65535) and mss_only(out[1])
    out = lab.rec(SYN | ACK, TISN, ISN + 1)
    assert [view(p)[2:6] for p in out] == [(ACK | PSH, ISN + 1, T1, 21)]  # completes the handshake
    assert tcpip.parse(out[0]).window == 65535  # no scaling was negotiated
    assert lab.c.sessions_midstream == 1


def test_a_lone_packet_without_its_syn_never_reaches_the_target() -> None:
    """Stray or crafted packets: held, never confirmed (no continuation, a RST, a repeat),
    dropped after MIDSTREAM_WAIT and counted; nothing is sent for any of them."""
    from nfreplay.session.table import MIDSTREAM_WAIT

    lab = Lab()
    assert lab.cl(ACK | PSH, ISN + 1, OSEQ + 1, b"junk") == []
    assert lab.cl(ACK, ISN + 1, OSEQ + 1) == []  # not a continuation: no evidence
    assert lab.cl(ACK | PSH, 77, 1, b"more", port=CPORT + 1) == []
    assert lab.cl(RST, 81, port=CPORT + 1) == []  # reset: that candidate is gone at once
    assert lab.c.midstream_unconfirmed == 1
    assert lab.advance(MIDSTREAM_WAIT + 1.5) == []
    assert lab.c.midstream_unconfirmed == 2
    assert lab.c.sessions_opened == 0 and lab.c.syns_sent == 0
    # Once dropped, a later continuation is a new candidate, not a join.
    assert lab.cl(ACK, ISN + 5, OSEQ + 50) == [] and lab.c.sessions_opened == 0


def test_a_midstream_stream_proves_itself_by_contiguous_data() -> None:
    """A one-way stream (the server never answers with data): two contiguous segments."""
    lab = Lab()
    assert lab.cl(ACK | PSH, ISN + 1, OSEQ + 1, b"a" * 10) == []
    out = lab.cl(ACK | PSH, ISN + 11, OSEQ + 1, b"b" * 10)
    assert out[0] == Announce(CLIENT, CPORT) and view(out[1])[2] == SYN
    out = lab.rec(SYN | ACK, TISN, ISN + 1)
    assert [view(p)[3] for p in out] == [ISN + 1, ISN + 11]
    assert lab.c.sessions_midstream == 1


def test_syn_only_ignores_midstream_sessions() -> None:
    lab = Lab(Params(target_ip=TARGET, target_port=TPORT, syn_only=True))
    assert lab.cl(ACK | PSH, ISN + 1, OSEQ + 1, b"x") == []
    assert lab.c.packets_no_session == 1 and lab.c.sessions_opened == 0


def test_midstream_refused_by_a_stateful_target_is_counted() -> None:
    lab = Lab()
    lab.cl(ACK | PSH, ISN + 1, OSEQ + 1, b"\x00\x00\x00\x08query")
    lab.cl(ACK, ISN + 10, OSEQ + 20)  # production answered: the evidence
    lab.rec(SYN | ACK, TISN, ISN + 1)
    lab.rec(RST | ACK, T1, ISN + 10)
    assert lab.c.midstream_refused == 1 and lab.c.sessions_target_reset == 1
    # The client goes on with that connection, also after the linger period: no new try.
    assert lab.cl(ACK | PSH, ISN + 10, OSEQ + 50, b"\x00\x00\x00\x08again") == []
    lab.advance(5.0)
    assert lab.cl(ACK | PSH, ISN + 19, OSEQ + 90, b"\x00\x00\x00\x08later") == []
    assert lab.c.sessions_midstream == 1 and lab.c.sessions_opened == 1


def test_server_first_greeting_is_awaited_then_client_data_goes_without_extra_trigger() -> None:
    lab = Lab()
    lab.established()
    # The online server greeted (20 bytes) and the client answered: its ACK covers them.
    assert lab.cl(ACK | PSH, ISN + 1, OSEQ + 21, b"USER x\r\n") == []
    out = lab.rec(ACK | PSH, T1, ISN + 1, 20)  # the target's greeting arrives
    assert [view(p)[2:6] for p in out] == [(ACK | PSH, ISN + 1, (T1 + 20) % 2**32, 8)]
    assert lab.c.greetings == 1


def test_client_first_protocol_is_not_delayed_by_the_greeting_check() -> None:
    lab = Lab()
    lab.established()
    out = lab.cl(ACK | PSH, ISN + 1, OSEQ + 1, b"GET / HTTP/1.1\r\n\r\n")
    assert len(out) == 1 and lab.c.greetings == 0


def test_no_wait_sends_the_next_request_at_once() -> None:
    lab = Lab(Params(target_ip=TARGET, target_port=TPORT, no_wait=True))
    lab.established()
    lab.cl(ACK | PSH, ISN + 1, OSEQ + 1, b"a" * 10)
    out = lab.cl(ACK | PSH, ISN + 11, OSEQ + 81, b"b" * 10)  # response not yet seen
    assert [view(p)[3] for p in out] == [ISN + 11]


def test_target_reset_with_unsent_data_reconnects_on_the_same_port() -> None:
    lab = Lab()
    lab.established()
    lab.cl(ACK | PSH, ISN + 1, OSEQ + 1, b"a" * 10)
    lab.rec(ACK, T1, ISN + 11, 30)
    lab.cl(ACK | PSH, ISN + 11, OSEQ + 31, b"b" * 10)  # second request, sent at once
    assert lab.cl(ACK | PSH, ISN + 21, OSEQ + 61, b"c" * 10) == []  # third: waits for a reply
    out = lab.rec(RST, (T1 + 30) % 2**32, 0)  # the target drops the connection before acking
    assert [type(x).__name__ for x in out] == ["bytearray", "Announce", "bytearray"]
    assert view(out[0])[2] == RST | ACK
    # The second request may have been processed (only its ACK lost): never sent again.
    # The third never left: the new connection starts with it.
    assert tcpip.parse(out[2]).flags == SYN and tcpip.parse(out[2]).seq == ISN + 20
    out = lab.rec(SYN | ACK, 7000, ISN + 21)
    assert [view(p)[2:6] for p in out] == [(ACK | PSH, ISN + 21, 7001, 10)]
    assert lab.c.reconnects == 1 and lab.c.resends_withheld == 1
    assert lab.c.sessions_target_reset == 0


def test_target_reset_with_only_unacked_data_ends_without_resending_it() -> None:
    """A request sent and never seen acknowledged when the target resets: it may have been
    processed, so it is not replayed again on a new connection; the session ends, counted."""
    lab = Lab()
    lab.established()
    lab.cl(ACK | PSH, ISN + 1, OSEQ + 1, b"a" * 10)
    lab.rec(ACK, T1, ISN + 11, 30)
    lab.cl(ACK | PSH, ISN + 11, OSEQ + 31, b"b" * 10)
    out = lab.rec(RST, (T1 + 30) % 2**32, 0)
    assert out == [] and lab.c.reconnects == 0
    assert lab.c.resends_withheld == 1 and lab.c.sessions_target_reset == 1


def test_target_reset_without_unsent_data_ends_the_session() -> None:
    lab = Lab()
    lab.established()
    lab.cl(ACK | PSH, ISN + 1, OSEQ + 1, b"a" * 10)
    lab.rec(ACK, T1, ISN + 11, 30)
    assert lab.rec(RST, (T1 + 30) % 2**32, 0) == []
    assert lab.c.sessions_target_reset == 1 and lab.c.reconnects == 0


def test_target_closed_first_then_a_new_request_reconnects() -> None:
    lab = Lab()
    lab.established()
    lab.cl(ACK | PSH, ISN + 1, OSEQ + 1, b"a" * 10)
    lab.rec(ACK, T1, ISN + 11, 30)
    lab.advance(0.2)
    lab.rec(FIN | ACK, (T1 + 30) % 2**32, ISN + 11)  # the target's idle timeout
    out = lab.cl(ACK | PSH, ISN + 11, OSEQ + 31, b"b" * 10)
    assert [type(x).__name__ for x in out] == ["bytearray", "Announce", "bytearray"]
    assert view(out[0])[2] == RST | ACK and tcpip.parse(out[2]).seq == ISN + 10
    assert lab.c.reconnects == 1


def test_capture_gap_that_never_fills_ends_the_session_with_a_reset() -> None:
    lab = Lab(Params(target_ip=TARGET, target_port=TPORT, gap_timeout=5.0))
    lab.established()
    lab.cl(ACK | PSH, ISN + 11, OSEQ + 1, b"b" * 10)  # bytes 1..10 never captured
    assert lab.advance(4.9) == []
    out = lab.advance(0.2)
    assert [view(p)[2] for p in out] == [RST | ACK]
    assert lab.c.sessions_capture_gap == 1


def test_buffer_overflow_ends_the_session() -> None:
    lab = Lab(Params(target_ip=TARGET, target_port=TPORT, max_pending_bytes=25))
    lab.established()
    lab.cl(ACK, ISN + 11, OSEQ + 1, b"x" * 20)  # held behind a gap
    out = lab.cl(ACK, ISN + 31, OSEQ + 1, b"y" * 20)
    assert [view(p)[2] for p in out] == [RST | ACK] and lab.c.sessions_overflow == 1


def test_idle_keepalive_session_outlives_session_timeout_until_keepalive_timeout() -> None:
    lab = Lab(Params(target_ip=TARGET, target_port=TPORT, session_timeout=60.0,
                     keepalive_timeout=300.0))
    lab.established()
    lab.cl(ACK | PSH, ISN + 1, OSEQ + 1, b"a" * 10)
    lab.rec(ACK, T1, ISN + 11, 30)
    lab.advance(0.2)
    assert lab.advance(100.0) == [] and lab.c.sessions_live == 1
    out = lab.advance(200.0)
    assert [view(p)[2] for p in out] == [RST | ACK] and lab.c.sessions_timed_out == 1


def test_three_duplicate_acks_trigger_one_fast_retransmit() -> None:
    lab = Lab()
    lab.established()
    lab.cl(ACK, ISN + 1, OSEQ + 1, b"a" * 10)
    lab.cl(ACK, ISN + 11, OSEQ + 1, b"b" * 10)
    outs = [lab.rec(ACK, T1, ISN + 1) for _ in range(4)]  # first segment lost
    assert outs[:2] == [[], []]
    assert [view(p)[3] for p in outs[2]] == [ISN + 1] and outs[3] == []
    assert lab.c.fast_retransmits == 1


def test_zero_window_is_probed_and_sending_resumes_on_update() -> None:
    lab = Lab()
    lab.established()
    lab.rec(ACK, T1, ISN + 1, window=0)
    assert lab.cl(ACK, ISN + 1, OSEQ + 1, b"a" * 10) == []
    out = lab.advance(0.25)  # persist timer: a probe
    assert [view(p)[3] for p in out] == [ISN + 1] and lab.c.window_probes == 1
    lab.cl(ACK, ISN + 11, OSEQ + 1, b"b" * 10)
    out = lab.rec(ACK, T1, ISN + 11, window=1000)  # update that acks everything
    assert [view(p)[3] for p in out] == [ISN + 11]


def test_session_cap_counts_what_it_refuses() -> None:
    lab = Lab(Params(target_ip=TARGET, target_port=TPORT, max_sessions=1))
    lab.cl(SYN, ISN)
    assert lab.cl(SYN, ISN, port=CPORT + 1) == []
    assert lab.c.sessions_rejected_limit == 1


def test_buffered_bytes_budget_refuses_new_sessions_until_bytes_leave() -> None:
    lab = Lab(Params(target_ip=TARGET, target_port=TPORT, max_buffered_bytes=30))
    lab.established()
    lab.cl(ACK, ISN + 11, OSEQ + 1, b"x" * 20)  # held behind a gap
    lab.cl(ACK, ISN + 31, OSEQ + 1, b"y" * 15)
    assert lab.c.bytes_buffered == 35
    # The budget is spent: a new connection is refused before its SYN, and its later
    # packets do not open it mid-stream.
    assert lab.cl(SYN, 7, port=CPORT + 1) == []
    assert lab.cl(ACK, 8, OSEQ + 1, b"q" * 5, port=CPORT + 1) == []
    assert lab.c.sessions_rejected_memory == 1 and lab.c.sessions_live == 1
    # The gap fills: everything goes, the bytes leave the budget, new sessions are admitted.
    out = lab.cl(ACK, ISN + 1, OSEQ + 1, b"a" * 10)
    assert [view(p)[3] for p in out] == [ISN + 1, ISN + 11, ISN + 31]
    assert lab.c.bytes_buffered == 0
    out = lab.cl(SYN, 9, port=CPORT + 2)
    assert out[0] == Announce(CLIENT, CPORT + 2) and view(out[1])[2] == SYN
    # Bytes still held when a session ends leave with it.
    lab.cl(ACK, 30, OSEQ + 1, b"z" * 7, port=CPORT + 2)  # before its SYN-ACK: held
    assert lab.c.bytes_buffered == 7
    lab.t.shutdown(lab.now, [])
    assert lab.c.bytes_buffered == 0


def test_counters_of_one_midstream_session_match_tcpcopys() -> None:
    """Reference §6 item 34: one mid-stream session → send syn 1, for no syn 1, conns 1."""
    lab = Lab()
    lab.cl(ACK | PSH, ISN + 1, OSEQ + 1, b"GET / HTTP/1.1\r\n\r\n")
    lab.cl(ACK, ISN + 19, OSEQ + 101)
    lab.rec(SYN | ACK, TISN, ISN + 1)
    lab.rec(ACK | PSH, T1, ISN + 19, 100)
    lab.cl(FIN | ACK, ISN + 19, OSEQ + 101)
    lab.rec(FIN | ACK, (T1 + 100) % 2**32, ISN + 20)
    snap = lab.c.snapshot()
    expect = {"syns_sent": 1, "sessions_midstream": 1, "sessions_established": 1,
              "client_data_packets": 1, "client_syns": 0, "data_packets_sent": 1,
              "fins_sent": 1, "records_data": 1, "records_fin": 1, "records_rst": 0,
              "sessions_completed": 1, "sessions_live": 0, "reconnects": 0}
    assert {k: snap[k] for k in expect} == expect


def test_client_timestamps_captured_before_the_syn_ack_are_tracked() -> None:
    """Request and FIN captured while our SYN is unanswered: our ACKs must not carry the SYN's
    older TSval (the target's PAWS check would drop them)."""
    lab = Lab()
    lab.cl(SYN, ISN, opts=ts_opt(100, 0))
    lab.cl(ACK, ISN + 1, OSEQ + 1, opts=ts_opt(100, 5))
    lab.cl(ACK | PSH, ISN + 1, OSEQ + 1, b"GET / HTTP/1.1\r\n\r\n", opts=ts_opt(101, 5))
    lab.cl(FIN | ACK, ISN + 19, OSEQ + 301, opts=ts_opt(102, 6))
    out = lab.rec(SYN | ACK, TISN, ISN + 1, opts=ts_opt(9000, 100))
    assert [view(p)[2] for p in out] == [ACK | PSH]
    # The request completes the handshake; its TSval is raised to the newest one captured.
    assert [tcpip.timestamps(tcpip.parse(p)) for p in out] == [(102, 9000)]


def test_last_ack_of_a_finished_session_is_absorbed_not_counted_as_unknown() -> None:
    lab = Lab()
    lab.established()
    lab.rec(FIN | ACK, T1, ISN + 1)
    lab.cl(FIN | ACK, ISN + 1, OSEQ + 2)
    lab.rec(ACK, (T1 + 1) % 2**32, ISN + 2)
    assert lab.c.sessions_completed == 1
    lab.cl(ACK, ISN + 2, OSEQ + 2)
    assert lab.c.packets_no_session == 0


def test_greeting_awaited_when_first_command_arrives_before_it_then_paced() -> None:
    """FTP-like: the client's first command (after a 20-byte greeting) is captured before the
    target's greeting arrives; it waits, goes when the greeting does, and the next command
    waits for the reply to this one (requests stay paced)."""
    lab = Lab()
    lab.established()
    assert lab.cl(ACK | PSH, ISN + 1, OSEQ + 21, b"USER a\r\n") == []
    assert lab.cl(ACK | PSH, ISN + 9, OSEQ + 41, b"PASS b\r\n") == []  # after a 20-byte reply
    out = lab.rec(ACK | PSH, T1, ISN + 1, 20)  # greeting
    assert [view(p)[3] for p in out] == [ISN + 1]
    out = lab.rec(ACK | PSH, (T1 + 20) % 2**32, ISN + 9, 20)  # reply to USER
    assert [view(p)[3] for p in out] == [ISN + 9]
    assert lab.c.greetings == 1 and lab.c.requests_sent == 2


def test_midstream_session_closed_by_the_target_without_a_word_is_refused_once() -> None:
    lab = Lab()
    lab.cl(ACK | PSH, ISN + 1, OSEQ + 1, b"\x00\x00\x00\x08query")
    lab.cl(ACK, ISN + 10, OSEQ + 20)
    lab.rec(SYN | ACK, TISN, ISN + 1)
    out = lab.rec(FIN | ACK, T1, ISN + 10)
    assert [view(p)[2] for p in out] == [RST | ACK]
    assert lab.c.midstream_refused == 1 and lab.c.sessions_target_reset == 1


def test_held_syn_session_closing_before_any_request_ends_filtered() -> None:
    p = Params(target_ip=TARGET, target_port=TPORT)
    lab = Lab(p)
    lab.t.sel.payload = object()  # type: ignore[assignment]  # any pattern: SYNs are held
    assert lab.cl(SYN, ISN) == []
    assert lab.t.next_wake() < INF_TIME  # the held session still times out
    assert lab.cl(FIN | ACK, ISN + 1, OSEQ + 1) == []
    assert lab.c.sessions_filtered == 1 and lab.c.sessions_live == 0


INF_TIME = float("inf")


def test_fake_handshake_sessions_advertise_an_unscaled_window() -> None:
    lab = Lab()
    lab.cl(ACK | PSH, ISN + 1, OSEQ + 1, b"GET / HTTP/1.1\r\n\r\n")  # window 502
    lab.cl(ACK, ISN + 19, OSEQ + 101)
    out = lab.rec(SYN | ACK, TISN, ISN + 1)
    assert [tcpip.parse(p).window for p in out] == [65535]
    out = lab.rec(ACK | PSH, T1, ISN + 19, 10)
    assert [tcpip.parse(p).window for p in out] == [65535]


def test_pending_bytes_follow_trimming_and_do_not_drift() -> None:
    lab = Lab()
    lab.established()
    lab.cl(ACK, ISN + 1, OSEQ + 1, b"a" * 10)
    lab.cl(ACK, ISN + 6, OSEQ + 1, b"b" * 10)  # 5 bytes overlap, trimmed
    (s,) = lab.t.sessions.values()
    assert s.pending_bytes == 0


# -- delayed ACK ------------------------------------------------------------------------------
DELAYED = dataclasses.replace(PARAMS, ack_delay=0.02)


def test_delayed_ack_rides_on_the_clients_fin() -> None:
    """A small response is not acknowledged at once: the client's FIN, captured within the
    delay, carries the ACK; no pure ACK is sent at all."""
    lab = Lab(DELAYED)
    lab.established()
    lab.cl(ACK | PSH, ISN + 1, OSEQ + 1, b"GET / HTTP/1.1\r\n\r\n")
    assert lab.rec(ACK | PSH, T1, ISN + 19, 300) == []
    assert lab.advance(0.005) == []
    out = lab.cl(FIN | ACK, ISN + 19, OSEQ + 301)
    assert [view(p)[2:5] for p in out] == [(FIN | ACK, ISN + 19, (T1 + 300) % 2**32)]
    assert lab.advance(0.05) == [] and lab.c.acks_sent == 1  # the handshake's, nothing since


def test_delayed_ack_goes_when_nothing_carries_it() -> None:
    lab = Lab(DELAYED)
    lab.established()
    lab.cl(ACK | PSH, ISN + 1, OSEQ + 1, b"a" * 10)
    assert lab.rec(ACK | PSH, T1, ISN + 11, 100) == []
    assert lab.advance(0.019) == []
    out = lab.advance(0.002)
    assert [view(p)[2:6] for p in out] == [(ACK, ISN + 11, (T1 + 100) % 2**32, 0)]
    # The next request, later, carries no news: no ACK is repeated before it.
    out = lab.cl(ACK | PSH, ISN + 11, OSEQ + 101, b"b" * 10)
    assert [view(p)[2:6] for p in out] == [(ACK | PSH, ISN + 11, (T1 + 100) % 2**32, 10)]


def test_two_segments_worth_and_the_handshake_are_acknowledged_at_once() -> None:
    lab = Lab(DELAYED)
    out = lab.cl(SYN, ISN)
    out = lab.rec(SYN | ACK, TISN, ISN + 1)
    assert [view(p)[2:5] for p in out] == [(ACK, ISN + 1, T1)]  # nothing to carry it: at once
    lab.cl(ACK | PSH, ISN + 1, OSEQ + 1, b"a" * 10)
    assert lab.rec(ACK, T1, ISN + 11, 1460) == []
    out = lab.rec(ACK, (T1 + 1460) % 2**32, ISN + 11, 1460)
    assert [view(p)[2:5] for p in out] == [(ACK, ISN + 11, (T1 + 2920) % 2**32)]
    # A segment the target repeats (our ACK was lost) is acknowledged at once, too.
    out = lab.rec(ACK, (T1 + 1460) % 2**32, ISN + 11, 1460)
    assert [view(p)[2:5] for p in out] == [(ACK, ISN + 11, (T1 + 2920) % 2**32)]


def test_every_end_reason_has_its_counter() -> None:
    from nfreplay.session.machine import REASONS

    assert {f"sessions_{r}" for r in REASONS} <= set(Counters.names)


def test_a_session_is_quiescent_once_it_has_nothing_to_send_or_await() -> None:
    """Offline replay ends when every session is quiescent: a session the capture cut
    before its FIN has nothing more to send once its response is complete."""
    lab = Lab()
    lab.established()
    s = lab.t.sessions[(CLIENT << 16) | CPORT]
    lab.cl(ACK | PSH, ISN + 1, OSEQ + 1, b"GET / HTTP/1.1\r\n\r\n")
    assert not s.quiescent(lab.now) and not lab.t.quiescent(lab.now)  # unacknowledged
    lab.rec(ACK | PSH, T1, ISN + 19, 300)
    assert not s.quiescent(lab.now)  # the response may go on
    assert s.quiescent(lab.now + 0.2) and lab.t.quiescent(lab.now + 0.2)  # quiet: complete


def test_client_sack_blocks_are_taken_out_before_replay() -> None:
    """A client's SACK blocks acknowledge the online server's bytes: in the target's sequence
    space they would be nonsense, so they leave as NOPs (the packet keeps its length)."""
    sack = b"\x01\x01\x05\x0a" + (OSEQ + 500).to_bytes(4, "big") + (OSEQ + 900).to_bytes(4, "big")
    for opts, sa_opts in ((b"", b""), (ts_opt(70, 0), ts_opt(9000, 70))):
        lab = Lab()
        lab.established(opts=opts, sa_opts=sa_opts)
        data_opts = (ts_opt(71, 0) if opts else b"") + sack
        out = lab.cl(ACK | PSH, ISN + 1, OSEQ + 1, b"x" * 10, opts=data_opts)
        assert [view(p)[2:6] for p in out] == [(ACK | PSH, ISN + 1, T1, 10)]  # checksum checked
        kinds = [k for k, _ in tcpip.options(tcpip.parse(out[0]))]
        assert tcpip.OPT_SACK not in kinds and len(out[0]) == 20 + 20 + len(data_opts) + 10
        assert (tcpip.OPT_TS in kinds) == bool(opts)
        assert lab.c.sack_stripped == 1


def test_unfinished_checksums_are_sent_computed_in_full() -> None:
    """A sender with TX checksum offload on the capturing host leaves its packets' TCP
    checksum unfinished: such a session's packets leave with full, right checksums."""
    lab = Lab()
    out: list = []
    for flags, seq, ack, payload in ((SYN, ISN, 0, b""), (ACK | PSH, ISN + 1, OSEQ + 1, b"q" * 9)):
        seg, pkt = client(flags, seq, ack, payload)
        pkt[36] ^= 0x5A  # the TCP checksum: only the pseudo-header sum, as offload leaves it
        assert not checksum.verify(pkt)
        lab.t.client_packet(tcpip.parse(pkt), pkt, lab.now, out)
        lab.t.flush(lab.now, out)
        if flags == SYN:
            assert view(out[1])[2] == SYN  # view() verifies both checksums
            assert [view(p)[2] for p in lab.rec(SYN | ACK, TISN, ISN + 1)] == [ACK]
            out = []
    assert [view(p)[2:6] for p in out] == [(ACK | PSH, ISN + 1, T1, 9)]
    assert lab.c.checksums_fixed == 2
    # A session whose packets were right stays on the incremental path.
    lab.cl(SYN, ISN, port=CPORT + 1)
    assert lab.c.checksums_fixed == 2


def test_max_mss_clamps_the_replayed_syn_and_a_faked_one() -> None:
    lab = Lab(dataclasses.replace(PARAMS, max_mss=1410))
    mss = b"\x02\x04\x05\xb4"  # 1460
    out = lab.cl(SYN, ISN, opts=mss + b"\x01\x01\x04\x02")
    syn = out[1]
    assert view(syn)[2] == SYN  # checksum still right after the incremental update
    assert tcpip.syn_options(tcpip.parse(syn))[0] == 1410
    assert lab.c.mss_clamped == 1
    # A smaller MSS is left alone, and not counted.
    out = lab.cl(SYN, ISN, opts=b"\x02\x04\x04\x00", port=CPORT + 1)
    assert tcpip.syn_options(tcpip.parse(out[1]))[0] == 1024
    assert lab.c.mss_clamped == 1
    # The handshake faked for a mid-stream join announces at most max_mss too.
    assert lab.cl(ACK | PSH, ISN + 1, OSEQ + 1, b"GET /mid HTTP/1.1\r\n\r\n",
                  port=CPORT + 2) == []
    out = lab.cl(ACK, ISN + 22, OSEQ + 101, port=CPORT + 2)
    syns = [p for p in out if isinstance(p, bytearray) and tcpip.parse(p).flags & SYN]
    assert syns and tcpip.syn_options(tcpip.parse(syns[0]))[0] == 1410


def test_no_max_mss_leaves_the_syn_as_captured() -> None:
    lab = Lab()
    out = lab.cl(SYN, ISN, opts=b"\x02\x04\x05\xb4")
    assert tcpip.syn_options(tcpip.parse(out[1]))[0] == 1460 and lab.c.mss_clamped == 0
