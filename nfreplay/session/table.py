"""All sessions of one nfreplay-online instance, keyed by client ip:port, with their timers.

Still sans-I/O: the engine hands in parsed packets/records and the time, and sends whatever
lands in `out`. Timers are a heap of (wake, serial, session) with lazy invalidation: a session
whose `wake` moved is pushed again, and a popped entry that no longer matches is skipped.

Sessions are keyed by the client address the target sees. Without client rewriting that is
the captured address; with a client pool or copies (`Selection.maps_clients`) a captured
connection is a `Flow` of one session per copy, each on a pair from the allocator, and every
packet is handed to each copy (its own bytes: sessions rewrite packets in place).
A captured connection the selection refuses is remembered in `_skipped` so that its later
packets do not open it mid-stream; a new SYN on that ip:port is judged afresh.

A connection first seen without its SYN (open before nfreplay-online started) is joined
mid-stream only on evidence that it is real: its data is held (`_unconfirmed`) until a
later packet continues it exactly where it ended and either acknowledges more of the
server's bytes (production answered it) or carries more data. A lone crafted or stray
packet never reaches the target; a candidate without evidence after MIDSTREAM_WAIT is
dropped and counted (`midstream_unconfirmed`). The capture holds only the client's
direction, so a crafted pair with consistent numbers can still pass. A candidate whose SYN
comes after it (reordered, as a traffic mirror may deliver) follows that SYN into its session.

Fan-in: when the assistant says that another online host replays the same client address and
port to the target at this moment (`collided`), a session still handshaking moves to another
client port of the same address (`Session.move`), re-keyed here; its captured packets find it
through `_moved`. Where it cannot move (client rewriting, or moved MAX_MOVES times already) it
ends as `collided`, counted, never silently.
"""

from __future__ import annotations

import heapq
import random

from nfreplay.proto import tcpip
from nfreplay.proto.seq import seq_add, seq_diff, seq_gt, seq_lt
from nfreplay.proto.tcpip import ACK, RST, SYN
from nfreplay.session.counters import Counters
from nfreplay.session.machine import HELD, INF, SYN_SENT, Out, Params, Session
from nfreplay.session.selection import Selection

TIMER_GRAIN = 0.001  # the finest timer step; a session never asks to wake sooner than this
# Timers are kept in slots of TIMER_GRAIN: a heap of slot numbers, each slot a list of the
# sessions due in it. A heap of (time, serial, session) tuples cost a tuple and its
# comparisons per timer (7 % of nfreplay-online's CPU in perf at 5 000 short sessions/s,
# compiled); now a session joins a list, and only a new slot costs a heap push of a float.
SLOTS_PER_SECOND = 1000.0
SKIP_MEMORY = 120.0  # seconds a refused connection is remembered after its last packet
MIDSTREAM_WAIT = 10.0  # seconds a mid-stream candidate may wait for its evidence
MAX_UNCONFIRMED = 16_384  # candidates held at once; more are dropped and counted
MAX_UNCONFIRMED_PACKETS = 32  # packets one candidate holds; more: dropped and counted
OVERTAKEN_WINDOW = 1 << 20  # client bytes after a SYN that data seen before it may start at
MAX_HELD_PACKETS = 1024  # packets a port's next connection holds while the last one ends
MAX_MOVES = 3  # a session that collided this often ends as `collided`
# Client ports a collided session moves to: below Linux's ephemeral range (32768-60999),
# where the clients' own connections come from, so a moved session rarely meets a real one.
MOVE_PORTS = (1024, 32768)


class Unconfirmed:
    """The packets of a connection seen without its SYN, until it proves itself."""

    __slots__ = ("since", "ack", "end", "packets")

    def __init__(self, seg: tcpip.Segment, pkt: bytearray, now: float) -> None:
        self.since = now
        self.ack = seg.ack  # the server bytes the client had acknowledged then
        self.end = seq_add(seg.seq, seg.payload_len)
        self.packets = [(seg, pkt)]

    def confirmed_by(self, seg: tcpip.Segment) -> bool:
        return seg.seq == self.end and (seq_gt(seg.ack, self.ack) or seg.payload_len > 0)


class Flow:
    """One captured connection replayed as several sessions (copies, or a mapped client)."""

    __slots__ = ("isn", "sessions")

    def __init__(self, isn: int, sessions: list[Session]) -> None:
        self.isn = isn
        self.sessions = sessions


class SessionTable:
    """Creates sessions on a client SYN, routes packets and records to them, runs timers."""

    def __init__(self, params: Params, counters: Counters | None = None,
                 selection: Selection | None = None, seed: int | None = None) -> None:
        self.p = params
        self.c = counters if counters is not None else Counters()
        self.sel = selection if selection is not None else Selection()
        self.sessions: dict[int, Session] = {}
        self.flows: dict[int, Flow] = {}  # captured key -> copies, when clients are mapped
        self._skipped: dict[int, float] = {}  # captured key -> last packet seen
        self._unconfirmed: dict[int, Unconfirmed] = {}  # captured key -> mid-stream candidate
        self._next_purge = 0.0
        self._next_unconfirmed = 0.0
        # False while nobody could report the target's replies (no control connection):
        # a new session would only leave a half-open connection on the target.
        self.accept_new = True
        # True while the engine cannot keep up: new sessions are refused before their SYN
        # goes out, so the admitted ones complete (shedding, not collapse).
        self.shed = False
        self._slots: dict[float, list[Session]] = {}  # slot number -> sessions due in it
        self._slot_heap: list[float] = []  # the slot numbers that have a list, as a heap
        self._queued = 0  # entries in all lists, superseded ones included
        self._entries = 0  # sessions with a live entry (`Session.sched` < INF)
        self._dirty: list[Session] = []
        # A client's next connection on a port whose previous replay is still running.
        self._held: dict[int, list[tuple[tcpip.Segment, bytearray]]] = {}
        self._held_until: dict[int, float] = {}
        # (client ip, port, target ip, port) of sessions announced and over since the engine
        # last looked: it withdraws them (CLIENT_DEL, where the assistant takes it).
        self.withdrawn: list[tuple[int, int, int, int]] = []
        # Captured key -> the key of its session, moved to another client port (fan-in).
        self._moved: dict[int, int] = {}
        # Picks the port a collided session moves to: random, so that two online hosts
        # moving away from the same port do not meet again (`seed` for tests).
        self._rng = random.Random(seed)

    def __len__(self) -> int:
        return len(self.sessions)

    def client_packet(self, seg: tcpip.Segment, pkt: bytearray, now: float, out: Out) -> None:
        """A client→service packet, as captured (`pkt` is ours to modify)."""
        key = (seg.src << 16) | seg.sport
        c = self.c
        if seg.payload_len:
            c.client_data_packets += 1
        elif seg.flags & SYN:
            c.client_syns += 1
        self._deliver(key, seg, pkt, now, out)

    def client_ack(self, key: int, ack: int, window: int) -> bool:
        """A pure ACK (no data, no SYN/FIN/RST) of the client at captured `key`, on the fast
        path: True if its session took it; False if it needs `client_packet` (no session
        yet, a refused connection, a port being reused, rewritten clients)."""
        if self.sel.maps_clients or self._held or key in self._skipped:
            return False
        s = self.sessions.get(key)
        if s is None:
            return False
        s.client_ack(ack, window)
        return True

    def _deliver(self, key: int, seg: tcpip.Segment, pkt: bytearray, now: float,
                 out: Out) -> None:
        c = self.c
        if self._skipped:
            if key in self._skipped:
                if not (seg.flags & SYN and not seg.flags & ACK):
                    self._skipped[key] = now
                    c.packets_not_selected += 1
                    return
                del self._skipped[key]  # a new connection on that ip:port: judge it afresh
        if self.sel.maps_clients:
            self._mapped_packet(key, seg, pkt, now, out)
            return
        if self._moved:
            moved = self._moved.get(key)
            if moved is not None and self._to_moved(key, moved, seg, pkt, now, out):
                return
        s = self.sessions.get(key)
        held = self._held.get(key)
        if held is not None and self._belongs_to_next(seg, s, held):
            if len(held) < MAX_HELD_PACKETS:
                held.append((seg, pkt))
            else:
                c.held_overflow += 1  # its replay will miss them: a capture gap, counted
            return
        if s is not None and s.done and not seg.flags & SYN:
            if not seg.payload_len:
                c.client_acks_absorbed += 1  # the client's last ACK of a finished session
                return
            if s.reason in ("overflow", "capture_gap") or seq_lt(seg.seq, s.snd_nxt):
                # Data of the connection that just ended (ended on purpose, or bytes it had
                # already sent): not a new connection to join mid-stream.
                c.packets_no_session += 1
                return
        if s is None or s.done:
            if seg.flags & SYN and not seg.flags & ACK:
                s = self._open(key, seg, now)
            else:
                packets = self._midstream(key, seg, pkt, now)
                # Proved real: a session that fakes its handshake, then its packets in order.
                if packets is not None and self._open(key, packets[0][0], now) is not None:
                    for seg, pkt in packets:
                        self._deliver(key, seg, pkt, now, out)
                return
            if s is None:
                return
        elif seg.flags & SYN and not seg.flags & ACK and seg.seq != s.isn:
            # The client reused its port for a new connection before our replay of the old
            # one finished (the target can hold only one): the new one waits its turn.
            self._held[key] = [(seg, pkt)]
            self._held_until[key] = now + self.p.successor_wait
            self._schedule(s)
            return
        if s.state == HELD and seg.payload_len and not self._judged(s, key, seg, now, out):
            return
        s.client_packet(seg, pkt, now, out)
        self._after(s, key, now, out)
        if seg.flags & SYN and self._unconfirmed and key in self._unconfirmed:
            self._overtaken(key, seg, now, out)

    def _overtaken(self, key: int, syn: tcpip.Segment, now: float, out: Out) -> None:
        """Data seen before its own SYN (a traffic mirror may reorder) waits as a mid-stream
        candidate; once the SYN opened the session, the data follows it there instead."""
        cand = self._unconfirmed[key]
        if not 0 < seq_diff(cand.packets[0][0].seq, syn.seq) <= OVERTAKEN_WINDOW:
            return  # another connection's data: left to wait for its evidence
        del self._unconfirmed[key]
        for seg, pkt in cand.packets:
            self._deliver(key, seg, pkt, now, out)

    def _to_moved(self, key: int, moved: int, seg: tcpip.Segment, pkt: bytearray, now: float,
                  out: Out) -> bool:
        """A captured packet of a connection whose session moved to another client port:
        True if that session took it. A new connection on the captured port (a SYN with
        another ISN) is not that one: it gets a session of its own, the moved one ends alone."""
        s = self.sessions.get(moved)
        if (s is None or ((s.orig_ip << 16) | s.orig_port) != key
                or seg.flags & SYN and not seg.flags & ACK and seg.seq != s.isn):
            del self._moved[key]
            return False
        if s.done:
            if seg.payload_len:
                self.c.packets_no_session += 1
            else:
                self.c.client_acks_absorbed += 1
            return True
        s.client_packet(seg, pkt, now, out)
        self._after(s, moved, now, out)
        return True

    def collided(self, client_ip: int, client_port: int, target_ip: int, target_port: int,
                 now: float, out: Out) -> None:
        """The assistant refused the announcement of client_ip:client_port → target: another
        online host's live session holds that four-tuple on the target. A session of ours
        still handshaking there moves to another client port of the same address; one that
        cannot move ends as `collided` (its SYN went out, but the target's answers go to the
        other host: nothing of it is owed, no RST is sent). A late notice (the session
        established, moved or ended since) changes nothing."""
        key = (client_ip << 16) | client_port
        s = self.sessions.get(key)
        if (s is None or s.done or s.established or s.state != SYN_SENT
                or s.t_ip != target_ip or s.t_port != target_port):
            return
        port = -1
        if not self.sel.maps_clients and s.moves < MAX_MOVES:
            port = self._free_port(client_ip)
        if port < 0:
            s.abort(now, out, "collided")
            self._after(s, key, now, out)
            return
        del self.sessions[key]
        s.move(port, now, out)
        new = (client_ip << 16) | port
        self.sessions[new] = s
        self._moved[(s.orig_ip << 16) | s.orig_port] = new
        if key in self._held:  # the client's next connection on that port need not wait
            self._start_successor(key, now, out)
        self._schedule(s)

    def _free_port(self, ip: int) -> int:
        """A client port of `ip` none of our sessions uses (-1 if none found quickly)."""
        sessions = self.sessions
        for _ in range(64):
            port = self._rng.randrange(*MOVE_PORTS)
            if (ip << 16) | port not in sessions:
                return port
        return -1

    @staticmethod
    def _belongs_to_next(seg: tcpip.Segment, s: Session | None,
                         held: list[tuple[tcpip.Segment, bytearray]]) -> bool:
        """Held packets follow the new connection's SYN; the old one's stragglers are told
        apart by which ISN their sequence number is nearer to."""
        if s is None or s.done:
            return True
        new_isn = held[0][0].seq
        return abs(seq_diff(seg.seq, new_isn)) < abs(seq_diff(seg.seq, s.isn))

    def _after(self, s: Session, key: int, now: float, out: Out) -> None:
        """After any event: withdraw a session that ended (its client address and port are
        free on the target), start a held successor once its predecessor is over."""
        if s.done and s.announced:
            s.announced = False
            self.withdrawn.append((s.client_ip, s.client_port, s.t_ip, s.t_port))
        if s.refused:
            # The target refused to join this connection mid-stream: its later packets must
            # not open it again (each try would be refused, and counted, anew).
            s.refused = False
            self._skipped[(s.orig_ip << 16) | s.orig_port] = now
        if self._held and s.done and key in self._held:
            self._start_successor(key, now, out)
        else:
            self._schedule(s)

    def _start_successor(self, key: int, now: float, out: Out) -> None:
        held = self._held.pop(key)
        self._held_until.pop(key, None)
        old = self.sessions.get(key)
        if old is not None and not old.done:
            old.abort(now, out, "superseded")
        self.sessions.pop(key, None)
        for seg, pkt in held:
            self._deliver(key, seg, pkt, now, out)

    def _admit(self, key: int, seg: tcpip.Segment, now: float) -> bool:
        if not self.accept_new:
            self.c.sessions_skipped_no_channel += 1
            return False
        if self.shed:
            self.c.sessions_shed += 1
            self._skipped[key] = now  # its later packets must not join mid-stream
            return False
        if len(self.sessions) >= self.p.max_sessions:
            self.c.sessions_rejected_limit += 1
            return False
        if self.c.bytes_buffered >= self.p.max_buffered_bytes:
            self.c.sessions_rejected_memory += 1
            self._skipped[key] = now  # its later packets must not join mid-stream
            return False
        why = self.sel.admit(seg, now)
        if why:
            setattr(self.c, why, getattr(self.c, why) + 1)
            self._skipped[key] = now
            return False
        return True

    def _open(self, key: int, seg: tcpip.Segment, now: float) -> Session | None:
        if not self._admit(key, seg, now):
            return None
        s = Session(self.p, self.c, seg.src, seg.sport, now,
                    target=self.sel.target_for(seg.dport))
        s.defer_syn = self.sel.payload is not None
        self.sessions[key] = s
        return s

    def _judged(self, s: Session, key: int, seg: tcpip.Segment, now: float,
                out: Out) -> bool:
        """A held SYN's first request: release the session, or forget it (nothing of it was
        sent); False if it is gone."""
        if self.sel.first_request_ok(seg):
            s.release(now, out)
            return True
        s.abort(now, out, "filtered")
        okey = (s.orig_ip << 16) | s.orig_port
        self._skipped[okey] = now
        self.sessions.pop(key, None)
        self._held.pop(key, None)
        self._held_until.pop(key, None)
        flow = self.flows.get(okey)
        if flow is not None and s in flow.sessions:
            flow.sessions.remove(s)
            if not flow.sessions:
                del self.flows[okey]
        return False

    def _mapped_packet(self, key: int, seg: tcpip.Segment, pkt: bytearray, now: float,
                       out: Out, confirmed: bool = False) -> None:
        """Client rewriting and copies: hand the packet to every session of its flow
        (`confirmed`: a mid-stream connection that proved itself, opened without asking)."""
        syn = seg.flags & SYN and not seg.flags & ACK
        flow = self.flows.get(key)
        if flow is not None and syn and seg.seq != flow.isn:
            flow = None  # a new connection on this ip:port; the old copies finish on their own
        if flow is None or all(s.done for s in flow.sessions):
            if not syn and not confirmed:
                packets = self._midstream(key, seg, pkt, now)
                for i, (seg, pkt) in enumerate(packets or ()):
                    if i and key not in self.flows:
                        break  # not admitted
                    self._mapped_packet(key, seg, pkt, now, out, confirmed=i == 0)
                return
            if not self._admit(key, seg, now):
                return
            pairs = self.sel.pairs_for(seg.src, seg.sport, now)
            self.c.copies_unallocated += self.sel.copies - len(pairs)
            target = self.sel.target_for(seg.dport)
            sessions = []
            for n, (ip, port) in enumerate(pairs):
                s = Session(self.p, self.c, ip, port, now, target=target,
                            source=(seg.src, seg.sport), copy=n)
                s.defer_syn = self.sel.payload is not None
                self.sessions[(ip << 16) | port] = s
                sessions.append(s)
            if not sessions:
                self._skipped[key] = now
                return
            flow = self.flows[key] = Flow(seg.seq if syn else seq_add(seg.seq, -1), sessions)
        last = len(flow.sessions) - 1
        for i, s in enumerate(flow.sessions):
            if s.done:
                continue
            if s.state == HELD and seg.payload_len and not self._judged(
                    s, (s.client_ip << 16) | s.client_port, seg, now, out):
                self.sel.release((s.client_ip, s.client_port), now)
                continue
            if i == last:
                s.client_packet(seg, pkt, now, out)
            else:
                copy = bytearray(pkt)
                s.client_packet(tcpip.parse(copy), copy, now, out)
            self._after(s, (s.client_ip << 16) | s.client_port, now, out)

    def _midstream(self, key: int, seg: tcpip.Segment, pkt: bytearray, now: float
                   ) -> list[tuple[tcpip.Segment, bytearray]] | None:
        """A packet of a connection we have no session for, not a SYN: the packets to open
        it mid-stream with (held ones first, this one last) once it proved itself, else None
        (held, or not replayable: pure ACKs, FINs, RSTs of unknown connections, `syn_only`)."""
        c = self.c
        cand = self._unconfirmed.get(key)
        if cand is not None:
            if cand.confirmed_by(seg):
                del self._unconfirmed[key]
                cand.packets.append((seg, pkt))
                return cand.packets
            if seg.flags & RST:
                del self._unconfirmed[key]
                c.midstream_unconfirmed += 1
            elif seg.payload_len:
                if len(cand.packets) < MAX_UNCONFIRMED_PACKETS:
                    cand.packets.append((seg, pkt))  # out of order or resent: kept
                else:
                    del self._unconfirmed[key]
                    c.midstream_unconfirmed += 1
            else:
                c.packets_no_session += 1
            return None
        if not seg.payload_len or self.p.syn_only:
            c.packets_no_session += 1  # nothing to replay from a pure ACK, FIN or RST
            return None
        if len(self._unconfirmed) >= MAX_UNCONFIRMED:
            c.midstream_unconfirmed += 1
            return None
        self._unconfirmed[key] = Unconfirmed(seg, pkt, now)
        return None

    def _remove(self, key: int, s: Session, now: float) -> None:
        """A session's linger is over: forget it, give its client pair back."""
        del self.sessions[key]
        if self._moved:
            okey = (s.orig_ip << 16) | s.orig_port
            if self._moved.get(okey) == key:
                del self._moved[okey]
        if self.sel.maps_clients:
            self.sel.release((s.client_ip, s.client_port), now)
            okey = (s.orig_ip << 16) | s.orig_port
            flow = self.flows.get(okey)
            if flow is not None and s in flow.sessions:
                flow.sessions.remove(s)
                if not flow.sessions:
                    del self.flows[okey]

    def response(self, seg: tcpip.Segment, now: float, out: Out) -> None:
        """A response record from the assistant (the target's packet to a client)."""
        s = self.sessions.get((seg.dst << 16) | seg.dport)
        if s is None:
            self.c.records_no_session += 1
            return
        s.response(seg, now, out)
        if s.ack_due:
            self._dirty.append(s)
        self._after(s, (s.client_ip << 16) | s.client_port, now, out)

    def flush(self, now: float, out: Out) -> None:
        """End of a wake-up: one ACK per session that received target data (or its
        delayed-ACK timer)."""
        for s in self._dirty:
            wake = s.wake
            s.flush_ack(now, out)
            if s.wake < wake:
                self._schedule(s)
        self._dirty.clear()

    def tick(self, now: float, out: Out) -> None:
        """Run every timer that is due; drop sessions whose linger period is over."""
        if now >= self._next_purge:
            self._next_purge = now + SKIP_MEMORY / 4
            limit = now - SKIP_MEMORY
            self._skipped = {k: t for k, t in self._skipped.items() if t > limit}
        if self._unconfirmed and now >= self._next_unconfirmed:
            self._next_unconfirmed = now + 1.0
            limit = now - MIDSTREAM_WAIT
            old = [k for k, u in self._unconfirmed.items() if u.since <= limit]
            for k in old:
                del self._unconfirmed[k]
            self.c.midstream_unconfirmed += len(old)
        heap = self._slot_heap
        limit = now * SLOTS_PER_SECOND
        while heap and heap[0] <= limit:
            slot = heapq.heappop(heap)
            # Popped whole: sessions scheduled while it runs go to a new list (and, if due
            # already, a new heap entry that this loop reaches too).
            due = self._slots.pop(slot)
            self._queued -= len(due)
            for s in due:
                if s.sched != slot:
                    continue  # superseded by an earlier entry (or already run)
                s.sched = INF
                self._entries -= 1
                self._fire(s, now, out)

    def _fire(self, s: Session, now: float, out: Out) -> None:
        key = (s.client_ip << 16) | s.client_port
        if self.sessions.get(key) is not s:
            return  # a predecessor replaced by its successor: nothing left to do
        if key in self._held and (s.done or now >= self._held_until[key]):
            self._start_successor(key, now, out)
            return
        if s.done and now >= s.linger_until:
            self._remove(key, s, now)
            return
        s.timer(now, out)
        if s.ack_due:
            s.flush_ack(now, out)
        if s.wake < now + TIMER_GRAIN and not s.done:
            # Never spin: a session that still wants to wake before a grain has passed (its
            # time came, or it lies within a rounding error of the slot just run) goes into
            # a later slot than this tick reaches.
            s.wake = now + TIMER_GRAIN
        self._after(s, key, now, out)

    def quiescent(self, now: float) -> bool:
        """No session has anything left to send or to wait for (offline: the file ended)."""
        return all(s.quiescent(now) for s in self.sessions.values()) and not self._held

    def next_wake(self) -> float:
        """When the earliest timer slot is due (it may hold only superseded entries)."""
        return self._slot_heap[0] / SLOTS_PER_SECOND if self._slot_heap else INF

    def _schedule(self, s: Session) -> None:
        """Make sure an entry fires at `s.wake` (or up to TIMER_GRAIN later, never sooner);
        an entry already due sooner is kept, and reschedules when it fires."""
        wake = s.wake
        if self._held_until:
            held_until = self._held_until.get((s.client_ip << 16) | s.client_port)
            if held_until is not None and held_until < wake:
                wake = held_until
        if wake == INF:
            return
        slot = -((-wake * SLOTS_PER_SECOND) // 1.0)  # rounded up: never before `wake`
        if slot >= s.sched:
            return  # the earlier entry will fire first and reschedule (INF: nothing due)
        if s.sched == INF:
            self._entries += 1
        s.sched = slot
        due = self._slots.get(slot)
        if due is None:
            self._slots[slot] = [s]
            heapq.heappush(self._slot_heap, slot)
        else:
            due.append(s)
        self._queued += 1
        if self._queued > 4 * self._entries + 1024:
            # Entries superseded by an earlier one linger until their slot; drop them all at
            # once when they dominate (each session keeps exactly one live entry).
            slots: dict[float, list[Session]] = {}
            for k, due in self._slots.items():
                live = [x for x in due if x.sched == k]
                if live:
                    slots[k] = live
            self._slots = slots
            self._slot_heap = list(slots)
            heapq.heapify(self._slot_heap)
            self._queued = self._entries

    def shutdown(self, now: float, out: Out) -> None:
        """Reset every live session on the target (so it keeps no half-open connections)."""
        for s in self.sessions.values():
            s.abort(now, out)
        self.sessions.clear()
        self.flows.clear()
        self._held.clear()
        self._held_until.clear()
        self._moved.clear()
        self._unconfirmed.clear()
        self._slots.clear()
        self._slot_heap.clear()
        self._queued = self._entries = 0

    def live_keys(self) -> list[tuple[int, int, int, int]]:
        """(client ip, port, target ip, port) of every session not yet over, e.g. to
        announce them again on a new control connection."""
        return [(s.client_ip, s.client_port, s.t_ip, s.t_port)
                for s in self.sessions.values() if not s.done]
