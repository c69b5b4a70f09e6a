"""The sans-I/O TCP session machine of the online side.

One `Session` per client ip:port. It is driven by three kinds of events and answers each with
commands appended to an `out` list (packets to inject, `Announce`s to put on the control
channel); it never touches a socket, a clock or a logger:

    client_packet(seg, pkt, now, out)   a packet the client sent to the online service
    response(seg, now, out)             a response header record the assistant reported
    timer(now, out)                     `now` reached `session.wake`
    flush_ack(now, out)                 end of a wake-up: ACK what the target sent (or
                                        arm the delayed-ACK timer)

Invariants (all sequence numbers are mod 2**32):
- Client sequence numbers are never translated: the target sees the client's own ISN, so a
  client packet keeps its seq; only its destination, its ACK (→ the target's space, `rcv_nxt`)
  and its TS echo (→ the target's latest TSval) are rewritten.
- `snd_nxt` is the next client byte to send to the target; every pending packet at or after it
  is sent in order, never twice except by retransmission; `t_una` ≤ `snd_nxt`.
- A new request (the client's ACK moved since the previous request, i.e. the online server
  answered in between) is held while the previous response is pending; continuation segments
  and pipelined requests (same client ACK) are sent at once.
- A response is complete when the target has sent as many bytes as the online server did
  (learnt from the client's ACK when the next request is captured), or has been quiet for
  `params.response_quiet`, or `params.response_timeout` passed without any response. A
  server-first greeting is a response to no request: the client's first data waits for it.
- Sessions whose SYN was not captured (mid-stream) get a faked handshake: SYN at
  first-data-seq − 1 with only an MSS option, our own third ACK, window forced to 65535 (no
  scaling was negotiated). A target RST (or FIN) with client data never sent makes the
  session reconnect the same way on the same client port; data sent before and never seen
  acknowledged is not sent again (the target may have processed it).
- `wake` is the earliest time `timer()` must be called; `done` is final.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Union

from nfreplay.proto import checksum, tcpip
from nfreplay.proto.seq import seq_add, seq_diff, seq_gt, seq_lt
from nfreplay.proto.tcpip import ACK, FIN, RST, SYN
from nfreplay.session.counters import Counters

INF = float("inf")
_ACK_TS_OFF = 20 + 20 + 2  # NOP, NOP, then the TS option's kind byte in our synthetic ACKs
# A delayed ACK goes at once when this many received bytes are unacknowledged (RFC 1122:
# at least every second full-sized segment), so the target's window never waits on it.
_ACK_EVERY = 2 * 1460

# States. Numbers, not an Enum: they are compared on the hot path.
SYN_SENT = 1
ESTABLISHED = 2
CLOSED = 3
HELD = 4  # SYN captured, not sent: waiting for the first request to be judged (pattern)

# Why a session ended; each has a counter `sessions_<reason>`.
REASONS = (
    "completed",  # both FINs exchanged and acknowledged
    "client_reset",  # the client reset; the RST was forwarded
    "target_reset",  # the target answered with a RST
    "handshake_failed",  # no SYN-ACK after every SYN retry
    "timed_out",  # nothing from the target for session_timeout
    "superseded",  # the client's next connection on this port could not wait any longer
    "capture_gap",  # bytes missing from the capture never arrived (gap_timeout)
    "overflow",  # more client data buffered than max_pending_bytes
    "shutdown",  # nfreplay-online stopped while the session was live
    "filtered",  # not replayed: its client or its first request did not pass the filters
    "collided",  # another online host replays this client ip:port to the target right now
)
# The reasons a session can end with before it ever established (its handshake with the
# target completed): each has a counter `unestablished_<reason>` too. "completed" needs an
# established connection.
UNESTABLISHED = tuple(r for r in REASONS if r != "completed")


@dataclass(frozen=True)
class Params:
    """Tunables of the session machine (seconds unless noted)."""

    target_ip: int
    target_port: int
    session_timeout: float = 120.0
    response_timeout: float = 3.0
    response_quiet: float = 0.1
    syn_rto: float = 1.0
    syn_retries: int = 3
    rto_min: float = 0.2
    rto_max: float = 3.0
    linger: float = 2.0
    successor_wait: float = 5.0  # longest a reused port's new connection waits for the old
    keepalive_timeout: float = 600.0  # idle sessions that did send requests live this long
    gap_timeout: float = 5.0  # a hole in the captured client stream ends the session
    fake_mss: int = 1460  # MSS option of faked SYNs
    # Largest MSS a replayed SYN may announce (0 = as captured): a tunnel's outer header
    # must never push the target's full-size segments past the path MTU (mss_clamped).
    max_mss: int = 0
    no_wait: bool = False  # send requests as soon as they are in order (tcpcopy -W)
    max_pending_bytes: int = 4 << 20  # client bytes buffered per session before giving up
    dupack_threshold: int = 3  # duplicate target ACKs that trigger a fast retransmit
    max_reconnects: int = 3  # per session, after target RSTs/FINs with client data owed
    syn_only: bool = False  # replay only sessions whose SYN was captured (tcpcopy -O)
    # Delayed ACK, as a client's kernel does: the ACK of a small response waits this long
    # for a packet of ours to carry it (the client's next request or FIN), saving a packet
    # per exchange; 0 = ACK at the end of every wake-up.
    ack_delay: float = 0.02
    max_sessions: int = 200_000  # sessions in memory; more are counted, not replayed
    # Client bytes all sessions together may hold before sending them (`bytes_buffered`);
    # while it is reached, new sessions are refused (`sessions_rejected_memory`).
    max_buffered_bytes: int = 256 << 20


class Announce:
    """Command: announce a session on the control channel (CLIENT_ADD) before its SYN."""

    __slots__ = ("client_ip", "client_port", "target_ip", "target_port", "session")

    def __init__(self, client_ip: int, client_port: int, target_ip: int = 0,
                 target_port: int = 0, session: Session | None = None) -> None:
        self.client_ip = client_ip
        self.client_port = client_port
        self.target_ip = target_ip
        self.target_port = target_port
        self.session = session  # who announces (the response recorder reads it)

    def __eq__(self, other: object) -> bool:
        # The target is left out: a session announces its own, tests compare the client.
        return (
            isinstance(other, Announce)
            and other.client_ip == self.client_ip
            and other.client_port == self.client_port
        )

    def __repr__(self) -> str:
        return f"Announce({tcpip.int2ip(self.client_ip)}:{self.client_port})"


#: What the session machine emits: packets to inject and announcements, in order.
Command = Union[bytearray, Announce]
Out = list[Command]


class Pending:
    """A captured client packet waiting to be sent (kept in client sequence order)."""

    __slots__ = ("seq", "end", "flags", "cack", "pkt", "seg", "size", "sent")

    def __init__(self, seg: tcpip.Segment, pkt: bytearray) -> None:
        self.seq = seg.seq
        self.end = seq_add(seg.seq, seg.payload_len + (1 if seg.flags & FIN else 0))
        self.flags = seg.flags
        self.cack = seg.ack
        self.pkt = pkt
        self.seg = seg
        self.size = seg.payload_len  # what it adds to `pending_bytes`, whatever trimming does
        self.sent = False  # rewritten for the target already (a retransmission only re-acks)


class Session:
    """One replayed TCP connection (see the module docstring for the invariants)."""

    __slots__ = (
        "p", "c", "client_ip", "client_port", "state", "done", "reason", "wake",
        "isn", "snd_nxt", "t_una", "t_win", "t_wscale", "rcv_nxt", "ts_ok", "t_tsval",
        "csum_fix", "c_tsval", "c_win", "pending", "unacked", "syn_pkt", "syn_tries", "syn_deadline",
        "rto", "rto_deadline", "waiting", "req_ack", "req_time", "resp_bytes", "resp_expect",
        "resp_last", "any_request", "fin_sent", "target_fin", "ack_due", "last_ack_sent",
        "idle_deadline", "linger_until", "ack_tpl", "ack_seg", "fake", "midstream",
        "greeting", "c_ack0", "pending_bytes", "gap_since", "t_last", "dupacks",
        "persist_deadline", "responded", "reconnect_count", "t_ip", "t_port", "orig_ip",
        "orig_port", "defer_syn", "held_by_response", "ack_deadline", "refused", "sched",
        "copy", "established", "moves", "announced",
    )

    def __init__(self, params: Params, counters: Counters, client_ip: int, client_port: int,
                 now: float, *, target: tuple[int, int] | None = None,
                 source: tuple[int, int] | None = None, copy: int = 0) -> None:
        """`client_ip:client_port` is the address the target sees; `source` the captured
        client's when it is rewritten (client pool, copies), `copy` which of its copies this
        is (from 0); `target` overrides the params' one (several service ports)."""
        self.p = params
        self.c = counters
        self.client_ip = client_ip
        self.client_port = client_port
        self.t_ip, self.t_port = target or (params.target_ip, params.target_port)
        self.orig_ip, self.orig_port = source or (client_ip, client_port)
        self.copy = copy
        self.state = CLOSED
        self.done = False
        self.reason = ""
        self.wake = INF
        self.isn = 0
        self.snd_nxt = 0
        self.t_una = 0
        self.t_win = 65535
        self.t_wscale = 0
        self.rcv_nxt = 0
        self.ts_ok = False
        self.t_tsval = 0
        self.c_tsval = 0
        self.c_win = 65535
        self.pending: list[Pending] = []
        # A list, not a deque: it holds a few packets, and an empty deque costs 760 bytes
        # per session (measured), a list 56.
        self.unacked: list[Pending] = []
        self.syn_pkt: bytearray | None = None
        self.syn_tries = 0
        self.syn_deadline = INF
        self.rto = params.rto_min
        self.rto_deadline = INF
        self.waiting = False
        self.req_ack = 0
        self.req_time = 0.0
        self.resp_bytes = 0
        self.resp_expect = -1
        self.resp_last = 0.0
        self.any_request = False
        self.fin_sent = False
        self.target_fin = False
        self.ack_due = False
        self.last_ack_sent = -1  # -1: nothing acknowledged on this connection yet
        self.ack_deadline = INF  # a delayed ACK is owed by then
        self.idle_deadline = now + params.session_timeout
        self.linger_until = INF
        self.ack_tpl: bytearray | None = None
        self.ack_seg: tcpip.Segment | None = None
        self.fake = False  # the current handshake is ours (mid-stream start or reconnect)
        self.midstream = False
        self.greeting = False  # waiting to learn whether the server speaks first
        self.c_ack0 = -1  # the client's first ACK value (online server ISN + 1)
        self.pending_bytes = 0
        self.gap_since = INF
        self.t_last = now
        self.dupacks = 0
        self.persist_deadline = INF
        self.responded = False  # the target sent data on this connection
        self.defer_syn = False  # hold the SYN until the first request was judged
        self.held_by_response = False  # the head of `pending` waits for the response
        self.reconnect_count = 0
        self.refused = False  # a mid-stream join the target refused (the table remembers it)
        # The client's first packet had no valid checksum (TX checksum offload on a sender
        # that shares the capture): every packet of the session leaves with full ones.
        self.csum_fix = False
        self.sched = INF  # the table's: the timer slot of this session's live entry
        self.established = False  # the handshake with the target completed, once
        self.moves = 0  # times moved to another client port (fan-in collisions)
        self.announced = False  # announced, and not withdrawn since (the table withdraws)
        counters.sessions_opened += 1
        counters.sessions_live += 1

    # ----------------------------------------------------------------- client side events

    def client_packet(self, seg: tcpip.Segment, pkt: bytearray, now: float, out: Out) -> None:
        """A packet the client sent to the online service (already a private copy)."""
        flags = seg.flags
        if self.done:
            return
        if not flags & RST:  # a RST's window (0) is no advertisement
            self.c_win = seg.window
        # Tracked in every state: packets captured while our SYN is still unanswered carry
        # newer TSvals, and an ACK of ours with an older one fails the target's PAWS check.
        ts = tcpip.timestamps(seg)
        if ts is not None and seq_gt(ts[0], self.c_tsval):
            self.c_tsval = ts[0]
        if flags & SYN:
            if self.state == CLOSED and not self.isn_known():
                self._send_syn(seg, pkt, now, out)
            # else: the client retransmitted its SYN; our own SYN timer covers the target
            return
        if self.c_ack0 < 0 and flags & ACK:
            self._first_ack(seg.ack)
        if not (flags & (FIN | RST)) and seg.payload_len == 0:
            # Pure ACKs (the client's handshake ACK, window updates, keep-alive probes) refer
            # to the online server's data; the target gets our own ACKs instead.
            self.c.client_acks_absorbed += 1
            return
        if self.state == CLOSED:
            if not seg.payload_len:
                return  # a FIN or RST of a connection we never saw start: nothing to replay
            self.midstream = True
            self.csum_fix = not checksum.verify(pkt)
            self.c.sessions_midstream += 1
            self._fake_syn(seq_add(seg.seq, -1), now, out)
        if self.state == HELD and flags & (FIN | RST) and not seg.payload_len:
            # The connection closes before its first request was judged: nothing of it
            # was sent, nothing is owed to the target.
            self._finish("filtered", now)
            return
        item = Pending(seg, pkt)
        self.pending_bytes += item.size
        self.c.bytes_buffered += item.size
        if self.pending_bytes > self.p.max_pending_bytes:
            self.abort(now, out, "overflow")
            return
        pend = self.pending
        if not pend or not seq_lt(item.seq, pend[-1].seq):
            pend.append(item)
        else:  # captured out of order: insert by sequence number
            i = len(pend)
            while i > 0 and seq_lt(item.seq, pend[i - 1].seq):
                i -= 1
            pend.insert(i, item)
        self._pump(now, out)

    def client_ack(self, ack: int, window: int) -> None:
        """The fast path's pure ACK of the client (no data, no SYN/FIN/RST, found by the
        engine without parsing the packet): only its window and, the first time, its ACK
        number matter; the target gets our own ACKs. Its TSval can be skipped: our packets
        carry the newest one of the packets that matter, so theirs never go backwards."""
        if not self.done:
            self.c_win = window
            if self.c_ack0 < 0:
                self._first_ack(ack)
        self.c.client_acks_absorbed += 1

    def _first_ack(self, ack: int) -> None:
        # The client's first ACK: the online server's ISN + 1, the base for greetings.
        self.c_ack0 = ack
        if self.greeting:
            self.req_ack = ack

    def quiescent(self, now: float) -> bool:
        """Nothing left to send and nothing awaited (a session still judging its first
        request holds nothing the target saw)."""
        if self.done or self.state == HELD:
            return True
        return (self.state == ESTABLISHED and not self.pending and not self.unacked
                and self._response_complete(now))

    def isn_known(self) -> bool:
        return self.syn_pkt is not None or self.state != CLOSED

    def _fake_syn(self, seq: int, now: float, out: Out) -> None:
        """Open (or reopen) the target's side with a handshake of our own at `seq`."""
        self.isn = seq
        self.snd_nxt = self.t_una = seq_add(seq, 1)
        self.fake = True
        self.last_ack_sent = -1
        self.ts_ok = False
        self.syn_pkt = tcpip.build(self.client_ip, self.t_ip, self.client_port,
                                   self.t_port, seq, 0, SYN, window=65535,
                                   options=b"\x02\x04" + self._fake_mss().to_bytes(2, "big"))
        self._offer_syn(now, out)

    def _fake_mss(self) -> int:
        mss = self.p.fake_mss
        return min(mss, self.p.max_mss) if self.p.max_mss else mss

    def _send_syn(self, seg: tcpip.Segment, pkt: bytearray, now: float, out: Out) -> None:
        self.isn = seg.seq
        self.snd_nxt = self.t_una = seq_add(seg.seq, 1)
        ts = tcpip.timestamps(seg)
        if ts is not None:
            self.c_tsval = ts[0]
        self.csum_fix = not checksum.verify(pkt)
        self._retarget(pkt, seg)
        if self.p.max_mss and tcpip.clamp_mss(pkt, self.p.max_mss):
            self.c.mss_clamped += 1
        if self.csum_fix:
            checksum.fill_checksums(pkt)
            self.c.checksums_fixed += 1
        self.syn_pkt = pkt
        if self.defer_syn:
            self.state = HELD
            self._rewake()  # the idle deadline still applies
            return
        self._offer_syn(now, out)

    def release(self, now: float, out: Out) -> None:
        """The first request passed: send the held SYN (the request follows the handshake)."""
        if self.state == HELD:
            self._offer_syn(now, out)

    def _offer_syn(self, now: float, out: Out) -> None:
        """Announce the session, then send its SYN (the client's, or ours)."""
        pkt = self.syn_pkt
        assert pkt is not None
        self.state = SYN_SENT
        self.syn_tries = 1
        self.syn_deadline = now + self.p.syn_rto
        out.append(Announce(self.client_ip, self.client_port, self.t_ip, self.t_port, self))
        self.announced = True
        out.append(pkt)
        self.c.syns_sent += 1
        self._rewake()

    # ----------------------------------------------------------------- sending to the target

    def _pump(self, now: float, out: Out, probe: bool = False) -> None:
        """Send every pending packet that may go now, in order; `probe`: the first one goes
        even beyond a shut window (the persist timer's window probe)."""
        self.held_by_response = False
        if self.state != ESTABLISHED:
            return
        pend = self.pending
        while pend:
            item = pend[0]
            snd_nxt = self.snd_nxt
            if item.flags & RST and not seq_gt(item.seq, snd_nxt):
                # A client RST occupies no sequence space; ours goes at snd_nxt, where the
                # target accepts it (RFC 5961), once no response is pending.
                if self.waiting and not self._response_complete(now):
                    self.held_by_response = True
                    break
                pend.pop(0)
                self._send_rst(out)
                self._finish("client_reset", now)
                return
            if not seq_gt(item.end, snd_nxt):
                # Entirely before what we sent: a client retransmission.
                pend.pop(0)
                self.pending_bytes -= item.size
                self.c.bytes_buffered -= item.size
                self.c.client_duplicates += 1
                continue
            if seq_gt(item.seq, snd_nxt):
                # A gap in the capture: wait for the missing bytes, but not forever.
                if self.gap_since == INF:
                    self.gap_since = now
                break
            self.gap_since = INF
            if seq_lt(item.seq, snd_nxt):
                # Partial overlap with what we sent: drop the old bytes.
                trimmed = tcpip.trim_front(item.pkt, 0, item.seg, seq_diff(snd_nxt, item.seq))
                item.pkt = trimmed
                item.seg = tcpip.parse(trimmed)
                item.seq = snd_nxt
                self.c.client_trimmed += 1
            flags = item.flags
            plen = item.seg.payload_len
            if self.waiting and self.resp_expect < 0 and item.cack != self.req_ack:
                # The client's ACK moved: the online server's whole response is that long.
                expect = seq_diff(item.cack, self.req_ack)
                if expect > 0:
                    self.resp_expect = expect
            if plen:
                if self.target_fin and self.responded and self.reconnect_count < self.p.max_reconnects:
                    # The target closed (e.g. its idle timeout) and the client goes on:
                    # reconnect on the same client port and send the request there.
                    self._reconnect(now, out)
                    return
                new_request = self.any_request and item.cack != self.req_ack
                if self.greeting:
                    # The first request of a SYN session: if the client's ACK moved past
                    # the handshake, the online server spoke first; the target's greeting
                    # is awaited like a response, and this data is then a new request.
                    new_request = item.cack != self.req_ack
                    if not new_request:
                        self.greeting = self.waiting = False
                if (self.waiting and new_request and not self.p.no_wait
                        and not self._response_complete(now)):
                    self.held_by_response = True
                    break
                if seq_diff(item.end, self.t_una) > self.t_win and not probe:
                    # Beyond the target's window: wait for it to open, probing if it is shut.
                    if not self.unacked and self.persist_deadline == INF:
                        self.persist_deadline = now + self.rto
                    break
                if not self.waiting or new_request:
                    if self.greeting:
                        self.greeting = False
                        self.c.greetings += 1
                    self._start_request(item.cack, now)
            elif flags & FIN:
                # A bare FIN goes once the target has answered and has everything before it.
                if self.waiting and not self._response_complete(now):
                    self.held_by_response = True
                    break
                if self.t_una != item.seq:
                    break
            pend.pop(0)
            self.pending_bytes -= item.size
            self.c.bytes_buffered -= item.size
            self.persist_deadline = INF
            self._transmit(item, out)
            self.snd_nxt = item.end
            self.unacked.append(item)
            if self.rto_deadline == INF:
                self.rto_deadline = now + self.rto
            if flags & FIN:
                self.fin_sent = True
            if probe:
                break
        self._rewake()

    def _reconnect(self, now: float, out: Out) -> None:
        """The target's side is gone but client data it never saw remains: reset whatever
        the target still holds, then a faked handshake on the same client port, and replay
        from the first byte never sent. Data sent on the old connection and not seen
        acknowledged is not sent again: the target may have processed it (its ACK, its
        response and its FIN can all be lost), and a request processed twice is worse than
        one lost (`resends_withheld`)."""
        self._send_rst(out)
        self.c.reconnects += 1
        self.reconnect_count += 1
        self.c.resends_withheld += self._owed_unacked()
        self.unacked.clear()
        first = self.pending[0].seq if self.pending else self.snd_nxt
        self.target_fin = self.fin_sent = self.responded = False
        self.waiting = self.greeting = False
        self.rto_deadline = self.persist_deadline = INF
        self.rto = self.p.rto_min
        self.ack_tpl = None
        self.dupacks = 0
        self._fake_syn(seq_add(first, -1), now, out)

    def _start_request(self, cack: int, now: float) -> None:
        self.waiting = True
        self.any_request = True
        self.req_ack = cack
        self.req_time = now
        self.resp_bytes = 0
        self.resp_expect = -1
        self.c.requests_sent += 1

    def _response_complete(self, now: float) -> bool:
        """Decide whether the pending response is over; clears `waiting` if so."""
        if not self.waiting:
            return True
        if self.target_fin or (self.resp_expect >= 0 and self.resp_bytes >= self.resp_expect):
            done = True
        elif self.resp_bytes:
            done = now - self.resp_last >= self.p.response_quiet
        elif now - self.req_time >= self.p.response_timeout:
            self.c.responses_timed_out += 1
            done = True
        else:
            done = False
        if done:
            self.waiting = False
            self.c.responses_complete += 1
        return done

    def _transmit(self, item: Pending, out: Out) -> None:
        """Rewrite a client packet into the target's space and emit it."""
        pkt = item.pkt
        seg = item.seg
        first = not item.sent
        if first:
            item.sent = True
            self._retarget(pkt, seg, self.rcv_nxt)
            # SACK blocks speak of the online server's bytes: in the target's space they would
            # claim data it never sent. Out (NOPs); more options than timestamps = maybe one.
            if seg.doff > 32 or (seg.doff > 20 and not self.ts_ok):
                sack = tcpip.find_option_offset(pkt, seg.off + seg.ihl, seg.doff, tcpip.OPT_SACK)
                if sack >= 0:
                    tcpip.nop_option(pkt, sack, seg.off)
                    self.c.sack_stripped += 1
        else:  # a retransmission: only the ACK can have moved
            tcpip.rewrite(pkt, 0, seg, ack=self.rcv_nxt)
            seg.ack = self.rcv_nxt
        if self.ts_ok:
            off = tcpip.ts_offset(pkt, seg.off + seg.ihl, seg.doff)
            if off >= 0:
                tcpip.set_tsecr(pkt, off, self.t_tsval)
                # TSval never goes back on the wire: our ACKs already carried the newest
                # one captured, and the target's PAWS check drops anything older.
                if seq_lt(int.from_bytes(pkt[off + 2:off + 6], "big"), self.c_tsval):
                    tcpip.set_tsval(pkt, off, self.c_tsval)
        if self.csum_fix and first:
            # An unfinished checksum stays wrong whatever is added to it: compute it whole,
            # once; later changes (a retransmission's ACK) are incremental from a right one.
            checksum.fill_checksums(pkt)
            self.c.checksums_fixed += 1
        self.last_ack_sent = self.rcv_nxt
        self.ack_due = False
        self.ack_deadline = INF
        if seg.payload_len:
            self.c.data_packets_sent += 1
        if seg.flags & FIN:
            self.c.fins_sent += 1
        out.append(pkt)

    def _retarget(self, pkt: bytearray, seg: tcpip.Segment, ack: int | None = None) -> None:
        """A captured packet, first time out: to the target, from the address the target
        sees (rewritten when the client is mapped), with our ACK; `seg` follows."""
        # No window scaling was negotiated on a faked handshake: the client's scaled window
        # would read as tiny there.
        window = 65535 if self.fake and not seg.flags & SYN else None
        if self.orig_ip == self.client_ip and self.orig_port == self.client_port:
            tcpip.rewrite(pkt, 0, seg, dst=self.t_ip, dport=self.t_port, ack=ack, window=window)
        else:
            tcpip.rewrite(pkt, 0, seg, src=self.client_ip, sport=self.client_port,
                          dst=self.t_ip, dport=self.t_port, ack=ack, window=window)
            seg.src, seg.sport = self.client_ip, self.client_port
        seg.dst, seg.dport = self.t_ip, self.t_port
        if ack is not None:
            seg.ack = ack
        if window is not None:
            seg.window = window

    def _window(self) -> int:
        return 65535 if self.fake else self.c_win

    def _synthetic(self, flags: int, seq: int, ack: int) -> bytearray:
        options = b""
        if self.ts_ok and not flags & RST:
            options = b"\x01\x01\x08\x0a" + self.c_tsval.to_bytes(4, "big") + \
                self.t_tsval.to_bytes(4, "big")
        return tcpip.build(self.client_ip, self.t_ip, self.client_port,
                           self.t_port, seq, ack, flags, window=self._window(),
                           options=options)

    def _ack_packet(self) -> bytearray:
        """A pure ACK. Built once per session, then copied and patched with incremental
        checksums: ACKs are a third of what the online side sends."""
        tpl = self.ack_tpl
        if tpl is None:
            tpl = self.ack_tpl = self._synthetic(ACK, self.snd_nxt, self.rcv_nxt)
            self.ack_seg = tcpip.parse(tpl)
            return bytearray(tpl)
        pkt = bytearray(tpl)
        assert self.ack_seg is not None  # parsed with the template
        tcpip.rewrite(pkt, 0, self.ack_seg, seq=self.snd_nxt, ack=self.rcv_nxt,
                      window=self._window())
        if self.ts_ok:  # the template's TS option sits right after the fixed headers
            tcpip.set_tsval(pkt, _ACK_TS_OFF, self.c_tsval)
            tcpip.set_tsecr(pkt, _ACK_TS_OFF, self.t_tsval)
        return pkt

    def _send_ack(self, out: Out) -> None:
        out.append(self._ack_packet())
        self.last_ack_sent = self.rcv_nxt
        self.ack_due = False
        self.ack_deadline = INF
        self.c.acks_sent += 1

    def _send_rst(self, out: Out) -> None:
        out.append(self._synthetic(RST | ACK, self.snd_nxt, self.rcv_nxt))
        self.c.resets_sent += 1

    # ----------------------------------------------------------------- target side events

    def response(self, seg: tcpip.Segment, now: float, out: Out) -> None:
        """A header record of a packet the target sent to this client."""
        flags = seg.flags
        if self.done:
            # Lingering: the target may repeat a FIN or data whose ACK it lost.
            if flags & (FIN) or seg.payload_len:
                self.ack_due = True
                ts = tcpip.timestamps(seg) if self.ts_ok else None
                if ts is not None and seq_gt(ts[0], self.t_tsval):
                    self.t_tsval = ts[0]
            return
        self.t_last = now
        self.idle_deadline = now + self.p.session_timeout
        c = self.c
        if seg.payload_len:
            c.records_data += 1
        if flags & (FIN | RST):
            if flags & FIN:
                c.records_fin += 1
            else:
                c.records_rst += 1
        if flags & RST:
            if self.state == ESTABLISHED and self._may_reconnect():
                self._reconnect(now, out)
                return
            self._finish("target_reset" if self.state == ESTABLISHED else "handshake_failed", now)
            return
        if self.state == SYN_SENT:
            if flags & SYN and flags & ACK and seg.ack == self.snd_nxt:
                self._established(seg, now, out)
            elif flags & ACK:
                self._clear_stale(seg.ack, now, out)
            return
        if self.state != ESTABLISHED:
            return
        if flags & SYN:
            # A repeated SYN-ACK: our handshake ACK was lost.
            self.ack_due = True
            return
        if flags & ACK:
            self._acked(seg, now, out)
            self.t_win = seg.window << self.t_wscale
        if self.ts_ok:
            ts = tcpip.timestamps(seg)
            if ts is not None and seq_gt(ts[0], self.t_tsval):
                self.t_tsval = ts[0]
        plen = seg.payload_len
        if plen:
            end = seq_add(seg.seq, plen)
            if seq_gt(end, self.rcv_nxt):
                # tcpcopy's rule: ACK the highest byte reported, even across a lost record;
                # the target's payload is never needed, only its pacing.
                self.resp_bytes += seq_diff(end, self.rcv_nxt)
                self.rcv_nxt = end
                self.resp_last = now
                self.responded = True
            self.ack_due = True
        if flags & FIN:
            fin_seq = seq_add(seg.seq, plen)
            if not self.target_fin and not seq_lt(self.rcv_nxt, fin_seq):
                self.rcv_nxt = seq_add(fin_seq, 1)
                self.target_fin = True
            self.ack_due = True
        if self.target_fin and self.fin_sent and self.t_una == self.snd_nxt:
            if self.last_ack_sent != self.rcv_nxt:
                self._send_ack(out)  # the target's FIN came after ours
            self._finish("completed", now)
            return
        if flags & FIN and self.midstream and not self.responded:
            # The target's application closed a session joined mid-stream without a word:
            # it refused it (counted by _finish); end it cleanly on the target too.
            self.abort(now, out, "target_reset")
            return
        self._pump(now, out)

    def _clear_stale(self, ack: int, now: float, out: Out) -> None:
        """The target answered our SYN with a plain ACK (or a SYN-ACK for another SYN): it
        still holds an older connection on this 4-tuple (the client reused its port before
        the old replay's close reached the target). Reset that connection at the sequence
        number it expects, then offer our SYN again at once."""
        out.append(tcpip.build(self.client_ip, self.t_ip, self.client_port,
                               self.t_port, ack, 0, RST, window=0))
        self.c.stale_resets += 1
        if self.syn_pkt is not None:
            out.append(self.syn_pkt)
            self.c.syn_retransmits += 1
            self.c.syns_sent += 1
            self.syn_deadline = now + self.p.syn_rto
            self._rewake()

    def _may_reconnect(self) -> bool:
        """After a target RST: reconnect only if client data never sent is still owed to the
        target and the target did answer on this connection before (a target that refuses
        outright, as a stateful server joined mid-stream does, would refuse again), a few
        times at most."""
        if (not self.responded or self.reconnect_count >= self.p.max_reconnects
                or not any(i.seg.payload_len for i in self.pending)):
            # Only data the target may have processed is owed (see _reconnect): not again.
            self.c.resends_withheld += self._owed_unacked()
            return False
        return True

    def _owed_unacked(self) -> int:
        """Client data segments sent on this connection and never seen acknowledged."""
        return sum(1 for i in self.unacked if i.seg.payload_len and seq_gt(i.end, self.t_una))

    def _established(self, seg: tcpip.Segment, now: float, out: Out) -> None:
        _mss, wscale, _sack, ts = tcpip.syn_options(seg)
        self.state = ESTABLISHED
        self.rcv_nxt = seq_add(seg.seq, 1)
        self.t_una = seg.ack
        self.t_wscale = wscale or 0
        self.t_win = seg.window  # a SYN-ACK's window is never scaled
        if ts is not None and self.c_tsval:
            self.ts_ok = True
            self.t_tsval = ts[0]
        self.syn_deadline = INF
        self.syn_pkt = None
        if not self.established:
            self.established = True
            self.c.sessions_established += 1
        # The handshake's ACK is due, not sent: if the first request is already captured,
        # _pump sends it now and its ACK completes the handshake (one packet fewer per
        # session); otherwise flush_ack sends a pure ACK at the end of this wake-up.
        self.ack_due = True
        if not self.fake and not self.any_request:
            # Until the client's first data shows otherwise, the server may speak first.
            self.greeting = True
            self.waiting = True
            self.req_ack = self.c_ack0 if self.c_ack0 >= 0 else 0
            self.req_time = now
            self.resp_bytes = 0
            self.resp_expect = -1
        self._pump(now, out)

    def _acked(self, seg: tcpip.Segment, now: float, out: Out) -> None:
        ack = seg.ack
        if not seq_gt(ack, self.t_una):
            if (ack == self.t_una and self.unacked and not seg.payload_len
                    and not seg.flags & FIN and (seg.window << self.t_wscale) == self.t_win):
                # A duplicate ACK: the target is missing the segment at t_una.
                self.dupacks += 1
                if self.dupacks == self.p.dupack_threshold:
                    self._transmit(self.unacked[0], out)
                    self.c.fast_retransmits += 1
            return
        if seq_gt(ack, self.snd_nxt):
            return  # acknowledges bytes we never sent: a stale or foreign record
        self.t_una = ack
        self.dupacks = 0
        unacked = self.unacked
        k = 0
        while k < len(unacked) and not seq_gt(unacked[k].end, ack):
            k += 1
        if k:
            del unacked[:k]
        self.rto = self.p.rto_min
        self.rto_deadline = now + self.rto if unacked else INF

    def flush_ack(self, now: float, out: Out) -> None:
        """Once per wake-up: acknowledge what the target sent, unless a data packet did.

        New bytes of a small response are acknowledged after `ack_delay` instead (the client's
        next request or FIN usually carries the ACK by then); the handshake, a repeated
        segment, 2 segments' worth of bytes and anything after the end go at once."""
        if self.ack_due and (self.state == ESTABLISHED or self.done):
            last = self.last_ack_sent
            if last != self.rcv_nxt or self.done or not self.unacked:
                if (self.p.ack_delay > 0 and last >= 0 and not self.done
                        and 0 < seq_diff(self.rcv_nxt, last) < _ACK_EVERY):
                    if self.ack_deadline == INF:
                        self.ack_deadline = now + self.p.ack_delay
                        if self.ack_deadline < self.wake:
                            self.wake = self.ack_deadline
                else:
                    self._send_ack(out)
            self.ack_due = False

    # ----------------------------------------------------------------- time

    def timer(self, now: float, out: Out) -> None:
        """Called when `now >= self.wake`; does whatever is due and recomputes `wake`."""
        if self.done:
            self._rewake()
            return
        if now >= self.ack_deadline:
            self.ack_deadline = INF
            if self.state == ESTABLISHED and self.last_ack_sent != self.rcv_nxt:
                self._send_ack(out)
        if now >= self.syn_deadline and self.syn_pkt is not None:
            if self.syn_tries > self.p.syn_retries:
                self._finish("handshake_failed", now)
                return
            self.syn_tries += 1
            self.c.syn_retransmits += 1
            self.c.syns_sent += 1
            # Announced again: if the first CLIENT_ADD could not be queued, its SYN was held
            # back, and this one must not go without one either (the owner may repeat it).
            out.append(Announce(self.client_ip, self.client_port, self.t_ip, self.t_port, self))
            out.append(self.syn_pkt)
            self.syn_deadline = now + self.p.syn_rto * (2 ** (self.syn_tries - 1))
        if now >= self.rto_deadline and self.unacked:
            first = self.unacked[0]
            self._transmit(first, out)
            self.c.retransmits += 1
            self.rto = min(self.rto * 2, self.p.rto_max)
            self.rto_deadline = now + self.rto
        if now >= self.persist_deadline and self.pending and self.state == ESTABLISHED:
            # The target's window stayed shut: send the next segment anyway; its answer
            # carries the window we need to go on.
            self.persist_deadline = INF
            before = self.snd_nxt
            self._pump(now, out, probe=True)
            if self.snd_nxt != before:
                self.c.window_probes += 1
        if now - self.gap_since >= self.p.gap_timeout:
            self.abort(now, out, "capture_gap")
            return
        if now >= self.idle_deadline:
            if (not self.pending and self.any_request and now < self.t_last + self.p.keepalive_timeout
                    and (not self.waiting or self._response_complete(now))):
                # An idle keep-alive connection that did its work: it may stay longer.
                self.idle_deadline = self.t_last + self.p.keepalive_timeout
            else:
                self.abort(now, out, "timed_out")
                return
        if self.pending:
            self._pump(now, out)
        self._rewake()

    def _rewake(self) -> None:
        if self.done:
            self.wake = self.linger_until
            return
        wake = min(self.syn_deadline, self.idle_deadline, self.persist_deadline,
                   self.gap_since + self.p.gap_timeout, self.ack_deadline)
        if self.unacked and self.rto_deadline < wake:
            wake = self.rto_deadline
        if self.waiting and self.held_by_response:
            # A held request: wake when the response may be deemed complete.
            hold = (self.resp_last + self.p.response_quiet if self.resp_bytes
                    else self.req_time + self.p.response_timeout)
            if hold < wake:
                wake = hold
        self.wake = wake

    def _finish(self, reason: str, now: float) -> None:
        if (self.midstream and not self.responded
                and reason in ("handshake_failed", "target_reset")):
            # A mid-stream session the target refused (a stateful protocol cannot be joined
            # in the middle): counted once, whichever way the refusal came.
            self.c.midstream_refused += 1
            self.refused = True
        self.done = True
        self.ack_due = False  # a RST (or our last ACK) already said everything
        self.ack_deadline = INF
        self.reason = reason
        self.state = CLOSED
        self.pending.clear()
        self.c.bytes_buffered -= self.pending_bytes
        self.pending_bytes = 0
        self.unacked.clear()
        self.syn_pkt = None
        self.linger_until = now + self.p.linger
        self.wake = self.linger_until
        c = self.c
        c.sessions_live -= 1
        setattr(c, "sessions_" + reason, getattr(c, "sessions_" + reason) + 1)
        if not self.established:
            setattr(c, "unestablished_" + reason, getattr(c, "unestablished_" + reason) + 1)

    def move(self, port: int, now: float, out: Out) -> None:
        """Another online host replays this client address and port to the target right now
        (the assistant refused our announcement): go on from client port `port` instead, with
        a fresh announcement and the same SYN. Only before the handshake completed; the table
        re-keys the session."""
        pkt = self.syn_pkt
        assert pkt is not None and self.state == SYN_SENT
        self.client_port = port
        tcpip.rewrite(pkt, 0, tcpip.parse(pkt), sport=port)
        self.moves += 1
        if self.moves == 1:
            self.c.sessions_moved += 1
        self._offer_syn(now, out)

    def abort(self, now: float, out: Out, reason: str = "shutdown") -> None:
        """End a live session now, resetting the target's side so it keeps no connection."""
        if self.done:
            return
        if self.state == ESTABLISHED:
            self._send_rst(out)
        self._finish(reason, now)
