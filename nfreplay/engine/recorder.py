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
  * Memory is bounded: held packets, waiting lines and recorded connections expire.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from struct import Struct
from struct import error as StructError
from typing import Protocol

from nfreplay.engine.routing import route_key
from nfreplay.proto.recording import SessionLine, encode_line
from nfreplay.proto.tcpip import ACK, RST, SYN, int2ip
from nfreplay.session.machine import Session
from nfreplay.session.sampling import Sampler

__all__ = ["Sink", "OnlineRecorder", "AssistRecorder", "RECORD_SEED", "HOLD_BYTES",
           "MAX_HELD_BYTES", "HOLD_SECONDS", "IDLE"]

#: Key of the recording sample's hash (not the replay sample's: --percent and
#: --record-percent choose independently). The assistant uses the same.
RECORD_SEED = b"nfreplay-recording"
HOLD_BYTES = 4 << 20
MAX_HELD_BYTES = 64 << 20
HOLD_SECONDS = 5.0
IDLE = 300.0  # a recorded connection silent this long is forgotten
MAX_CONNS = 262_144  # production connections followed at once, at most

_HEAD = Struct("!BxxxxxxxxxxxII")  # vihl, src, dst
_PORTS = Struct("!HHII")  # sport, dport, seq, ack


class Sink(Protocol):
    """Where recorded packets and lines go (``adapters.recordfiles.RecordingDirectory``)."""

    def packet(self, kind: str, ts: float, ip: bytes) -> None: ...

    def line(self, text: str) -> None: ...


class _Conn:
    """A production connection seen by the recorder's capture."""

    __slots__ = ("start", "isn", "server", "held", "held_bytes", "recorded", "last")

    def __init__(self, start: float, isn: int | None, server: tuple[int, int]) -> None:
        self.start = start
        self.isn = isn
        self.server = server
        self.held: list[tuple[float, bytes]] | None = []
        self.held_bytes = 0
        self.recorded = False
        self.last = start


class OnlineRecorder:
    """``services``: (service ip or None, port) the capture copies; ``targets``: (ip, port)
    the sessions are replayed to. ``sampler``: which copies to record (None: all)."""

    def __init__(self, services: Iterable[tuple[int | None, int]],
                 targets: Iterable[tuple[int, int]], sink: Sink,
                 sampler: Sampler | None = None) -> None:
        self.services = set(services)
        self.ports = {port for _, port in self.services}
        self.targets = set(targets)
        self.sink = sink
        self.sampler = sampler
        self.conns: dict[tuple[int, int], _Conn] = {}  # production client -> connection
        self.sent: dict[tuple[int, int], float] = {}  # recorded copies' clients -> last
        self.waiting: dict[tuple[int, int], list[tuple[Session, float]]] = {}
        self.announced: dict[tuple[int, int], Session] = {}
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
                self.sent[key] = ts
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
            self._release(conn)  # a new connection on this client port
            conn = None
        if conn is None:
            if len(self.conns) >= MAX_CONNS:
                self.held_dropped += 1
                return
            conn = self.conns[key] = _Conn(ts, seq if flags & SYN else None, server)
            waiting = self.waiting.pop(key, None)
            if waiting:
                for session, _ in waiting:
                    self._line(session, conn)
        conn.last = ts
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
        if self.announced.get(sent) is session:
            return  # a repeated SYN: already decided
        self.announced[sent] = session
        if self.sampler is not None and not self.sampler.keep(sent[0], sent[1], now):
            self.not_sampled += 1
            return
        self.sent[sent] = now
        key = (session.orig_ip, session.orig_port)
        conn = self.conns.get(key)
        if conn is None:
            self.waiting.setdefault(key, []).append((session, now))
        else:
            self._line(session, conn)

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
        """About once a second: forget what expired (`now`: the capture's clock, wall time).
        A line still waiting for its connection is written with the announce time."""
        for key, waiting in list(self.waiting.items()):
            if now - waiting[0][1] >= HOLD_SECONDS:
                del self.waiting[key]
                for session, at in waiting:
                    self._line(session, _Conn(at, None, self._server_of(session)))
        for key, conn in list(self.conns.items()):
            if now - conn.last >= (IDLE if conn.recorded else HOLD_SECONDS):
                del self.conns[key]
                self._release(conn)
        for key, last in list(self.sent.items()):
            if now - last >= IDLE:
                del self.sent[key]
                self.announced.pop(key, None)
        for key, session in list(self.announced.items()):
            if session.done and key not in self.sent:
                del self.announced[key]

    def _release(self, conn: _Conn) -> None:
        self.held_bytes -= conn.held_bytes
        conn.held, conn.held_bytes = None, 0

    def _server_of(self, session: Session) -> tuple[int, int]:
        """The service a connection the capture never showed was for: the one service of this
        instance, or 0.0.0.0 and its port when there are several (compare pairs by it)."""
        (ip, port), *more = sorted(self.services, key=lambda s: (s[1], s[0] or 0))
        return (ip or 0, port) if not more else (0, port)


class AssistRecorder:
    """nfreplay-assist's side: wraps the NFQUEUE callback (`on_packet`, which makes the record
    and says DROP) and writes each of the target's replies in full to `sink` ("target"), for
    the sessions announced to it (and SYN-ACKs and RSTs, which may beat their announcement),
    sampled like the online side (``--record-percent``). Recording never changes a verdict:
    its errors are counted (`errors`), the packet is dropped all the same."""

    def __init__(self, on_packet: Callable[[bytes], bool], routed: Callable[[int], object],
                 sink: Sink, sampler: Sampler | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.on_packet = on_packet
        self.routed = routed
        self.sink = sink
        self.sampler = sampler
        self.clock = clock
        self.errors = 0

    def __call__(self, payload: bytes) -> bool:
        verdict = self.on_packet(payload)
        try:
            vihl, src, dst = _HEAD.unpack_from(payload, 0)
            off = (vihl & 0x0F) * 4
            sport, dport, _seq, _ack = _PORTS.unpack_from(payload, off)
            flags = payload[off + 13]
            now = self.clock()
            if (flags & (SYN | RST) or self.routed(route_key(dst, dport, src, sport))
                    is not None) and (self.sampler is None or self.sampler.keep(dst, dport, now)):
                self.sink.packet("target", now, bytes(payload))
        except Exception:
            self.errors += 1
        return verdict
