"""All sessions of one nfreplay-online instance, keyed by client ip:port, with their timers.

Still sans-I/O: the engine hands in parsed packets/records and the time, and sends whatever
lands in `out`. Timers are a heap of (wake, serial, session) with lazy invalidation: a session
whose `wake` moved is pushed again, and a popped entry that no longer matches is skipped.
"""

from __future__ import annotations

import heapq
import itertools

from nfreplay.proto import tcpip
from nfreplay.proto.tcpip import ACK, SYN
from nfreplay.session.machine import INF, Counters, Params, Session


class SessionTable:
    """Creates sessions on a client SYN, routes packets and records to them, runs timers."""

    def __init__(self, params: Params, counters: Counters | None = None) -> None:
        self.p = params
        self.c = counters if counters is not None else Counters()
        self.sessions: dict[int, Session] = {}
        self._heap: list[tuple[float, int, Session]] = []
        self._serial = itertools.count()
        self._scheduled: dict[int, float] = {}  # id(session) -> earliest wake already pushed
        self._dirty: list[Session] = []

    def __len__(self) -> int:
        return len(self.sessions)

    def client_packet(self, seg: tcpip.Segment, pkt: bytearray, now: float, out: list) -> None:
        """A client→service packet, as captured (`pkt` is ours to modify)."""
        key = (seg.src << 16) | seg.sport
        s = self.sessions.get(key)
        if s is None or s.done:
            if seg.flags & SYN and not seg.flags & ACK:
                s = self._open(key, seg, now, out)
            else:
                # Sessions that began before we started (mid-stream) are not replayed yet.
                self.c.packets_no_session += 1
                return
        elif seg.flags & SYN and not seg.flags & ACK and seg.seq != s.isn:
            # The client reused its port for a new connection while the old one was live.
            s.abort(now, out, "superseded")
            s = self._open(key, seg, now, out)
        s.client_packet(seg, pkt, now, out)
        self._schedule(s)

    def _open(self, key: int, seg: tcpip.Segment, now: float, out: list) -> Session:
        s = Session(self.p, self.c, seg.src, seg.sport, now)
        self.sessions[key] = s
        return s

    def response(self, seg: tcpip.Segment, now: float, out: list) -> None:
        """A response record from the assistant (the target's packet to a client)."""
        s = self.sessions.get((seg.dst << 16) | seg.dport)
        if s is None:
            self.c.records_no_session += 1
            return
        s.response(seg, now, out)
        if s.ack_due:
            self._dirty.append(s)
        self._schedule(s)

    def flush(self, out: list) -> None:
        """End of a wake-up: one ACK per session that received target data."""
        for s in self._dirty:
            s.flush_ack(out)
        self._dirty.clear()

    def tick(self, now: float, out: list) -> None:
        """Run every timer that is due; drop sessions whose linger period is over."""
        heap = self._heap
        while heap and heap[0][0] <= now:
            wake, _, s = heapq.heappop(heap)
            sid = id(s)
            if self._scheduled.get(sid) != wake:
                continue  # superseded by an earlier push
            del self._scheduled[sid]
            if s.done and now >= s.linger_until:
                key = (s.client_ip << 16) | s.client_port
                if self.sessions.get(key) is s:
                    del self.sessions[key]
                continue
            s.timer(now, out)
            if s.ack_due:
                s.flush_ack(out)
            self._schedule(s)

    def next_wake(self) -> float:
        return self._heap[0][0] if self._heap else INF

    def _schedule(self, s: Session) -> None:
        wake = s.wake
        if wake == INF:
            return
        sid = id(s)
        have = self._scheduled.get(sid)
        if have is not None and have <= wake:
            return  # the earlier entry will fire first and reschedule
        self._scheduled[sid] = wake
        heapq.heappush(self._heap, (wake, next(self._serial), s))

    def shutdown(self, now: float, out: list) -> None:
        """Reset every live session on the target (so it keeps no half-open connections)."""
        for s in self.sessions.values():
            s.abort(now, out)
        self.sessions.clear()
        self._heap.clear()
        self._scheduled.clear()

    def live_keys(self) -> list[tuple[int, int]]:
        """(client ip, port) of every session not yet over, e.g. to announce them again."""
        return [(s.client_ip, s.client_port) for s in self.sessions.values() if not s.done]
