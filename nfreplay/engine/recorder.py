"""What nfreplay-online records for `nfreplay compare` (``--record-responses DIR``): which
packets of a second capture go to which stream, and the session lines.

The recorder's capture (both directions, every interface) sees three kinds of packets: a
client's packets to the service and the service's answers (stream ``production``), and the
packets nfreplay-online sent to the target (``to-target``). The engine tells it, through
``announce(session)``, which sessions it replays and where (``Announce.session``).

Invariants:
  * Pure: packets come in as (capture time, IPv4 bytes), streams and lines go out to a
    ``Sink``; the clock is passed in. Recording changes nothing on the replay path.
  * Only replayed sessions are recorded, and only those whose copy the sampler keeps
    (``--record-percent``, keyed on the client address the target saw, as on the assistant, so
    both sides record the same copies). A production connection is recorded once one of its
    copies is; what it sent before the engine decided is held (this capture may run ahead of
    the replay's by a ring block: a whole short session), at most ``HOLD_BYTES`` per
    connection and ``MAX_HELD_BYTES`` in all, for ``HOLD_SECONDS``, and written then, in order.
  * A session line's ``start`` is the capture time of the production connection's first SYN
    (or first packet, joined mid-stream), as `compare` pairs them; a line whose connection
    the recorder has not seen yet waits for it (``HOLD_SECONDS``, then it is written with the
    announce time).
  * A line is bound to its own connection, not an earlier one on the same client port: the
    session's ISN must be the connection's SYN's.
  * Memory is bounded: held packets go HOLD_SECONDS after their connection began; recorded
    connections and copies LINGER after they closed (IDLE at most while open).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from itertools import islice
from struct import Struct
from struct import error as StructError
from typing import Any, Protocol

from nfreplay.engine.routing import route_key
from nfreplay.proto.recording import SessionLine, encode_line
from nfreplay.proto.tcpip import ACK, FIN, RST, SYN, int2ip
from nfreplay.session.machine import Session
from nfreplay.session.sampling import Sampler

__all__ = ["Sink", "OnlineRecorder", "AssistRecorder", "RECORD_SEED", "HOLD_BYTES",
           "MAX_HELD_BYTES", "HOLD_SECONDS", "LINGER", "IDLE"]

#: Key of the recording sample's hash (not the replay sample's: --percent and
#: --record-percent choose independently). The assistant uses the same.
RECORD_SEED = b"nfreplay-recording"
HOLD_BYTES = 4 << 20
MAX_HELD_BYTES = 64 << 20
HOLD_SECONDS = 5.0
LINGER = 30.0  # closed connections and finished copies go this long after their last packet
IDLE = 3600.0  # a recorded connection silent this long is forgotten, open or not
SWEEP = 4096  # entries of each table looked at per tick, oldest first (the loop never waits)
MAX_CONNS = 262_144  # production connections followed at once, at most

_HEAD = Struct("!BxxxxxxxxxxxII")  # vihl, src, dst
_PORTS = Struct("!HHII")  # sport, dport, seq, ack
_HEAD_LEN = Struct("!BxH8xII")  # vihl, tot_len, src, dst
_PORT_PAIR = Struct("!HH")


class Sink(Protocol):
    """Where recorded packets and lines go (``adapters.recordfiles.RecordingDirectory``)."""

    def packet(self, kind: str, ts: float, ip: bytes) -> None: ...

    def line(self, text: str) -> None: ...


class _Conn:
    """A production connection seen by the recorder's capture."""

    __slots__ = ("start", "isn", "server", "held", "held_bytes", "recorded", "last", "closed")

    def __init__(self, start: float, isn: int | None, server: tuple[int, int]) -> None:
        self.start = start
        self.isn = isn  # its SYN's sequence number; None: joined mid-stream
        self.server = server
        self.held: list[tuple[float, bytes]] | None = []
        self.held_bytes = 0
        self.recorded = False
        self.last = start
        self.closed = False  # a FIN or RST went by: forgotten soon after its last packet

    def same(self, session: Session) -> bool:
        """Whether `session` replays this connection (not an earlier one on the same port)."""
        return self.isn is None or session.fake or session.isn == self.isn


class OnlineRecorder:
    """``services``: (service ip or None, port, target ip, target port) of each service the
    instance copies. ``sampler``: which copies to record (None: all)."""

    def __init__(self, services: Iterable[tuple[int | None, int, int, int]], sink: Sink,
                 sampler: Sampler | None = None) -> None:
        services = list(services)
        self.services = {(ip, port) for ip, port, _, _ in services}
        self.ports = {port for _, port in self.services}
        self.targets = {(tip, tport): (ip or 0, port) for ip, port, tip, tport in services}
        self.sink = sink
        self.sampler = sampler
        self.conns: dict[tuple[int, int], _Conn] = {}  # production client -> connection
        # Recorded copies, by the client address the target saw: their session.
        self.sent: dict[tuple[int, int], Session] = {}
        self.sent_last: dict[tuple[int, int], float] = {}
        self.waiting: dict[tuple[int, int], list[tuple[Session, float]]] = {}
        self.decided: dict[tuple[int, int], Session] = {}  # announced, not sampled
        self.sessions = 0  # session lines written
        self.not_sampled = 0
        self.held_bytes = 0  # in all connections' held packets
        self.held_dropped = 0  # packets past HOLD_BYTES or MAX_HELD_BYTES, or MAX_CONNS

    def _service(self, ip: int, port: int) -> bool:
        return port in self.ports and ((None, port) in self.services or
                                       (ip, port) in self.services)

    # ------------------------------------------------------------------ the capture

    def packet(self, ts: float, ip: bytes) -> None:
        """One packet of the recorder's capture."""
        try:
            vihl, src, dst = _HEAD.unpack_from(ip, 0)
            off = (vihl & 0x0F) * 4
            sport, dport, seq, _ack = _PORTS.unpack_from(ip, off)
            flags = ip[off + 13]
        except (StructError, IndexError):
            return
        if (dst, dport) in self.targets:
            key = (src, sport)
            if key in self.sent:
                self.sent_last[key] = ts
                self.sink.packet("to-target", ts, ip)
            return
        if self._service(dst, dport):
            key, server = (src, sport), (dst, dport)
        elif self._service(src, sport):
            key, server = (dst, dport), (src, sport)
        else:
            return
        conn = self.conns.get(key)
        if flags & (SYN | ACK) == SYN and conn is not None and conn.isn != seq:
            self._forget(key, conn)  # a new connection on this client port
            conn = None
        if conn is None:
            if len(self.conns) >= MAX_CONNS:
                self.held_dropped += 1
                return
            conn = self.conns[key] = _Conn(ts, seq if flags & SYN else None, server)
            waiting = self.waiting.pop(key, None)
            for session, at in waiting or ():
                if conn.same(session):
                    self._line(session, conn)
                else:  # announced for a connection this capture has not shown yet
                    self.waiting.setdefault(key, []).append((session, at))
        conn.last = ts
        if flags & (FIN | RST):
            conn.closed = True
        if conn.recorded:
            self.sink.packet("production", ts, ip)
        elif conn.held is not None:
            size = len(ip)
            if conn.held_bytes + size <= HOLD_BYTES and \
                    self.held_bytes + size <= MAX_HELD_BYTES:
                conn.held.append((ts, ip))
                conn.held_bytes += size
                self.held_bytes += size
            else:
                self.held_dropped += 1

    # ------------------------------------------------------------------ the engine

    def announce(self, session: Session, now: float) -> None:
        """The engine announces `session` (again, for a SYN it repeats). `now`: wall clock."""
        sent = (session.client_ip, session.client_port)
        if self.sent.get(sent) is session or self.decided.get(sent) is session:
            return  # a repeated SYN: already decided
        if self.sampler is not None and not self.sampler.keep(sent[0], sent[1], now):
            self.not_sampled += 1
            self.decided[sent] = session
            return
        self.sent[sent] = session
        self.sent_last[sent] = now
        key = (session.orig_ip, session.orig_port)
        conn = self.conns.get(key)
        if conn is not None and conn.same(session):
            self._line(session, conn)
        else:  # this capture has not shown the connection yet (or only an earlier one)
            self.waiting.setdefault(key, []).append((session, now))

    def _line(self, session: Session, conn: _Conn) -> None:
        self.sink.line(encode_line(SessionLine(
            client=(int2ip(session.orig_ip), session.orig_port),
            server=(int2ip(conn.server[0]), conn.server[1]),
            sent_client=(int2ip(session.client_ip), session.client_port),
            target=(int2ip(session.t_ip), session.t_port),
            copy=session.copy, start=conn.start)))
        self.sessions += 1
        if not conn.recorded:
            conn.recorded = True
            for ts, ip in conn.held or ():
                self.sink.packet("production", ts, ip)
            self._release(conn)

    # ------------------------------------------------------------------ housekeeping

    def tick(self, now: float) -> None:
        """About once a second: forget what is over (`now`: wall clock, as the capture's).
        A line still waiting for its connection is written with the announce time."""
        for key, waiting in list(self.waiting.items()):
            if now - waiting[0][1] >= HOLD_SECONDS:
                del self.waiting[key]
                for session, at in waiting:
                    self._line(session, _Conn(at, None, self._server_of(session)))
        def conn_over(key: tuple[int, int], conn: _Conn) -> bool:
            if conn.recorded:
                over = conn.closed and now - conn.last >= LINGER or now - conn.last >= IDLE
            else:  # never chosen: held packets go after HOLD_SECONDS, however busy
                over = now - conn.start >= HOLD_SECONDS
            if over:
                self._release(conn)
            return over

        def sent_over(key: tuple[int, int], session: Session) -> bool:
            if session.done and now - self.sent_last[key] >= LINGER:
                del self.sent_last[key]
                return True
            return False

        _sweep(self.conns, conn_over)
        _sweep(self.sent, sent_over)
        _sweep(self.decided, lambda key, session: session.done)

    def _forget(self, key: tuple[int, int], conn: _Conn) -> None:
        self._release(conn)
        if self.conns.get(key) is conn:
            del self.conns[key]

    def _release(self, conn: _Conn) -> None:
        self.held_bytes -= conn.held_bytes
        conn.held, conn.held_bytes = None, 0

    def _server_of(self, session: Session) -> tuple[int, int]:
        """The service a session whose connection the capture never showed was for (an
        unknown service address is 0.0.0.0)."""
        return self.targets.get((session.t_ip, session.t_port), (0, 0))


def _sweep(table: dict[Any, Any], over: Callable[[Any, Any], bool]) -> None:
    """Drop the entries `over` says are over, looking at SWEEP of them, oldest first; the
    others go to the back, so every entry is looked at in turn however big the table."""
    for key in list(islice(table, SWEEP)):
        value = table.pop(key)
        if not over(key, value):
            table[key] = value


class AssistRecorder:
    """nfreplay-assist's side: wraps the NFQUEUE callback (`on_packet`, which makes the record
    and says DROP) and writes each of the target's replies in full to `sink` ("target"), for
    the sessions announced to it or waiting for their announcement (`known(route key)`, asked
    after `on_packet`: a SYN-ACK parked there counts), sampled like the online side
    (``--record-percent``). Recording never changes a verdict: its errors are counted
    (`errors`), the packet is dropped all the same. `truncated` counts replies cut by the
    queue's copy size (NetfilterQueue copies at most 4016 bytes: jumbo frames)."""

    def __init__(self, on_packet: Callable[[bytes], bool], known: Callable[[int], bool],
                 sink: Sink, sampler: Sampler | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.on_packet = on_packet
        self.known = known
        self.sink = sink
        self.sampler = sampler
        self.clock = clock
        self.errors = 0
        self.truncated = 0

    def __call__(self, payload: bytes) -> bool:
        verdict = self.on_packet(payload)
        try:
            vihl, tot_len, src, dst = _HEAD_LEN.unpack_from(payload, 0)
            sport, dport = _PORT_PAIR.unpack_from(payload, (vihl & 0x0F) * 4)
            now = self.clock()
            if self.known(route_key(dst, dport, src, sport)) and (
                    self.sampler is None or self.sampler.keep(dst, dport, now)):
                self.sink.packet("target", now, bytes(payload))
                if len(payload) < tot_len:
                    self.truncated += 1
        except Exception:
            self.errors += 1
        return verdict
