"""The online role's loop: capture → session table → raw socket, paced by the assistant's records.

The one place where the session machine's commands become I/O. Each wake-up:
  1. deliver every captured packet (batch), 2. read every record from the assistants,
  3. run due timers, 4. one ACK per session that received data, 5. send the commands,
  6. flush control-channel buffers. Nothing here logs per packet.
"""

from __future__ import annotations

import logging
import selectors
import socket
import time
from collections.abc import Callable, Sequence
from struct import Struct
from typing import Protocol, Union
from struct import error as StructError

from nfreplay.adapters.channel import Assistant, Conn
from nfreplay.engine.recorder import OnlineRecorder
from nfreplay.errors import WireError
from nfreplay.proto import channel, tcpip
from nfreplay.proto.tcpip import ACK, FIN, RST, SYN
from nfreplay.proto.resegment import split
from nfreplay.session.counters import Counters
from nfreplay.session.machine import Announce, Out, Params
from nfreplay.session.selection import Selection
from nfreplay.session.table import SessionTable

log = logging.getLogger("nfreplay.online")

# Live capture is read in batches of at most this many packets, one batch per wake-up: a
# backlog (the loop fell behind) is then taken in steps, each measuring the capture's lag
# before it (shedding) and letting records and timers in between (pacing).
CAPTURE_BATCH = 512

# vihl, tot_len, proto, src, sport, ack, data offset, flags, window of an IPv4 (ihl 5) packet.
_PEEK = Struct("!BxH5xB2xI4xH6xIBBH").unpack_from
_SYN_FIN_RST_ACK = SYN | FIN | RST | ACK


class LiveCapture(Protocol):
    """What the engine needs of a live capture (adapters.capture.Capture)."""

    def fileno(self) -> int: ...

    def dispatch(self, callback: Callable[[bytes, int], None],
                 on_lag: Callable[[float], None] | None = None, limit: int = -1) -> int: ...


class RecordCapture(Protocol):
    """What the response recorder's capture is (adapters.capture.Capture, both directions)."""

    def fileno(self) -> int: ...

    def dispatch_ts(self, callback: Callable[[float, bytes], None], limit: int = -1) -> int: ...


_RECORD = "record"  # the selector's data for the recorder's capture


class FileCapture(Protocol):
    """What the engine needs of a capture file played on its own clock
    (adapters.pcapsource.FileSource): no descriptor, frames due by time."""

    def wait(self, now: float) -> float: ...

    def dispatch(self, callback: Callable[[bytes, int], None]) -> int: ...


class Sender(Protocol):
    """What the engine needs of the raw socket (adapters.rawsock.RawSender)."""

    def send(self, pkt: bytes | bytearray, dst: str) -> bool: ...


CaptureSource = Union[LiveCapture, FileCapture]


class OnlineEngine:
    """Runs until `stop()` says so; adapters come in through the constructor."""

    def __init__(self, params: Params, capture: CaptureSource | None, sender: Sender,
                 assistants: Sequence[Assistant], *, mtu: int = 1500,
                 reconnect_interval: float = 2.0,
                 connect_timeout: float = 3.0, clock: Callable[[], float] = time.monotonic,
                 counters: Counters | None = None, selection: Selection | None = None,
                 shed_lag: float = 0.5) -> None:
        self.p = params
        self.capture = capture
        self.sender = sender
        self.assistants = list(assistants)
        self.reconnect_interval = reconnect_interval
        self.mtu = mtu
        self.file: FileCapture | None = None
        self.live: LiveCapture | None = None
        # A file is played on its own clock (it has `wait`); a structural check, since the
        # compiled module cannot isinstance() a Protocol.
        if hasattr(capture, "wait"):
            self.file = capture  # type: ignore[assignment]
        else:
            self.live = capture  # type: ignore[assignment]
        self.offline = self.file is not None
        self.tail_since: float | None = None  # offline: when the file ran out
        self.connect_timeout = connect_timeout
        self.clock = clock
        self.c = counters if counters is not None else Counters()
        self.table = SessionTable(params, self.c, selection)
        self._names: dict[bytes, str] = {}  # packed IPv4 -> dotted, for sendto()
        self.out: Out = []
        self.now = clock()
        self._next_connect = 0.0
        self.channel_up = 0  # until a control connection is up
        self.channel_drops = 0
        self.announces_failed = 0
        self._collided_said = False  # the WARN line of sessions_collided was logged
        # Shedding: new sessions are refused while the capture runs more than `shed_lag`
        # seconds behind the wire, until it is back under half of that (0 = never shed).
        self.shed_lag = shed_lag
        self._shed_log_at = 0.0
        self._shed_logged = 0
        # epoll: the capture once, each control connection while it exists (by fd).
        self._capture_more = False  # the last batch was full: read on without waiting
        self._sel = selectors.DefaultSelector()
        self._fds: dict[Conn, int] = {}
        self._conns: list[Conn] = []  # connected control connections
        self._opening: list[tuple[Assistant, Conn]] = []  # connects in progress
        self._wanted_conns = sum(len(a.conns) for a in self.assistants)
        if self.live is not None:
            self._sel.register(self.live.fileno(), selectors.EVENT_READ, None)
        self.recorder: OnlineRecorder | None = None
        self._record_capture: RecordCapture | None = None
        self._record_more = False

    def record(self, recorder: OnlineRecorder, capture: RecordCapture) -> None:
        """Record responses (``--record-responses``): `capture` (both directions) feeds
        `recorder`, which also learns every session announced."""
        self.recorder, self._record_capture = recorder, capture
        self._sel.register(capture.fileno(), selectors.EVENT_READ, _RECORD)

    @property
    def channel_up(self) -> int:
        """Live control connections."""
        return self._channel_up

    @channel_up.setter
    def channel_up(self, n: int) -> None:
        self._channel_up = n
        # New sessions only while a control connection can report the target's replies:
        # otherwise they would only leave half-open connections on the target.
        self.table.accept_new = n > 0

    # ------------------------------------------------------------------ callbacks (hot path)

    def _on_frame(self, frame: bytes, off: int) -> None:
        self.c.packets_captured += 1
        try:
            self._frame(frame, off)
        except Exception:  # a bug, not bad bytes: count it, never let a packet end the loop
            self._internal_error("a captured packet")

    def _frame(self, frame: bytes, off: int) -> None:
        # Fast path for pure ACKs, two of a short session's five packets: nothing of them is
        # replayed, so they are read in place, not copied and parsed.
        try:
            vihl, tot_len, proto, src, sport, ack, doff, flags, window = _PEEK(frame, off)
        except StructError:
            pass
        else:
            if (vihl == 0x45 and proto == 6 and flags & _SYN_FIN_RST_ACK == ACK
                    and tot_len == 20 + ((doff >> 2) & 0x3C)
                    and self.table.client_ack((src << 16) | sport, ack, window)):
                return
        try:
            pkt = bytearray(memoryview(frame)[off:])
            seg = tcpip.parse(pkt)
            if not tcpip.complete(seg):
                raise WireError("truncated capture")
        except WireError:
            self.c.packets_bad += 1
            return
        if len(pkt) > seg.tot_len:  # Ethernet padding of short frames
            del pkt[seg.tot_len:]
        if seg.tot_len > self.mtu:
            # A GRO/TSO capture: the raw socket would refuse it, so send it in MTU pieces.
            self.c.packets_split += 1
            for piece in split(pkt, seg, self.mtu):
                self.table.client_packet(tcpip.parse(piece), piece, self.now, self.out)
            return
        self.table.client_packet(seg, pkt, self.now, self.out)

    def _on_record(self, record: bytes, now: float) -> None:
        self.c.records_received += 1
        try:
            self.table.response(tcpip.parse(record), now, self.out)
        except WireError:  # the assistant's bytes, not ours: count them, go on
            self.c.records_bad += 1
        except Exception:
            self._internal_error("a response record")

    def _on_notice(self, conn: Conn, record: bytes, now: float) -> None:
        """A notice of the nfreplay extension (only an assistant we offered it sends one)."""
        try:
            kind, _features, m = channel.parse_notice(record)
        except WireError:  # not a notice: counted as a bad record
            self._on_record(record, now)
            return
        if kind == channel.NOTICE_HELLO:
            conn.notices = True
        elif kind == channel.NOTICE_COLLIDED and conn.notices:
            self.c.collision_notices += 1
            collided = self.c.sessions_collided
            try:
                self.table.collided(m.clt_ip, m.clt_port, m.target_ip, m.target_port, now,
                                    self.out)
            except Exception:
                self._internal_error("a collision notice")
            if self.c.sessions_collided != collided and not self._collided_said:
                self._collided_said = True
                log.warning(
                    "a session of client %s:%d is not replayed: another online host replays "
                    "the same client address and port to the target right now, and this one "
                    "could not move it to another port (counted as sessions_collided; said "
                    "once). With a client pool or copies sessions are not moved: give each "
                    "online host a client pool of its own (online.client_pool ranges that do "
                    "not overlap)", tcpip.int2ip(m.clt_ip), m.clt_port)
        else:
            self.c.records_bad += 1

    def _internal_error(self, what: str) -> None:
        """Count an unexpected exception and go on; the first few are logged (the traceback
        at debug level), then only counted (`internal_errors` in status)."""
        self.c.internal_errors += 1
        if self.c.internal_errors <= 5:
            log.warning("internal error while handling %s (counted as internal_errors; "
                        "--debug shows the traceback)", what, exc_info=log.isEnabledFor(
                            logging.DEBUG))

    # ------------------------------------------------------------------ the loop

    def connect(self, now: float) -> None:
        """Start connects for missing control connections (at most every reconnect_interval)."""
        if now < self._next_connect:
            return
        self._next_connect = now + self.reconnect_interval
        for a in self.assistants:
            a.connect_missing(now)
        self._watch()

    def _connected(self, a: Assistant, now: float) -> None:
        """A control connection came up: announce every live session on it again, since
        sessions announced on a connection that died would lose their records."""
        a.refresh()
        log.info("control channel to %s: %d/%d connections up", a.name, len(a.ready),
                 len(a.conns))
        for ip, port, tip, tport in self.table.live_keys():
            a.announce(channel.encode_client_add(ip, port, tip, tport))

    def _watch(self) -> None:
        """Bring the selector and the cached connection lists in line with the connections'
        states; called whenever one may have changed (connect started, finished, dropped)."""
        sel, fds = self._sel, self._fds
        want: dict[Conn, tuple[Assistant, int]] = {}
        for a in self.assistants:
            a.refresh()
            for c in a.conns:
                if c is not None and not c.closed:
                    want[c] = (a, selectors.EVENT_WRITE if c.connecting else selectors.EVENT_READ)
        for c in [c for c in fds if c not in want]:
            sel.unregister(fds.pop(c))  # by fd: a closed socket has no fileno() any more
        for c, (a, events) in want.items():
            fd = fds.get(c)
            if fd is None:
                fds[c] = fd = c.fileno()
                sel.register(fd, events, (a, c))
            elif sel.get_key(fd).events != events:
                sel.modify(fd, events, (a, c))
        self._conns = [c for a in self.assistants for c in a.ready]
        self._opening = [(a, c) for c, (a, _) in want.items() if c.connecting]
        self.channel_up = len(self._conns)

    def step(self, timeout: float) -> None:
        """One wake-up: wait at most `timeout` seconds for input, then do everything due."""
        if self.file is not None:  # frames are due by the file's clock, not by a descriptor
            timeout = min(timeout, self.file.wait(self.clock()))
        events = self._sel.select(0.0 if self._capture_more or self._record_more else timeout)
        now = self.now = self.clock()
        capture_ready = self._capture_more
        readable: list[Conn] = []
        changed = False
        record_ready = False
        for key, mask in events:
            if key.data is None:
                capture_ready = True
                continue
            if key.data is _RECORD:
                record_ready = True
                continue
            a, conn = key.data
            if conn.connecting:
                changed = True
                if a.finish_connect(conn, now, self.connect_timeout):
                    self._connected(a, now)
            elif mask & selectors.EVENT_READ:
                readable.append(conn)
        for a, conn in self._opening:
            if conn.connecting and now - conn.since >= self.connect_timeout:
                changed = True
                # It may have completed since select(): then it is up like any other.
                if a.finish_connect(conn, now, self.connect_timeout):
                    self._connected(a, now)
        if changed:
            self._watch()
        # A file waits for its assistant; live traffic cannot wait, it is read and counted.
        if self.file is not None and self.channel_up:
            self.file.dispatch(self._on_frame)
        elif capture_ready and self.live is not None:
            n = self.live.dispatch(
                self._on_frame, self._shed if self.shed_lag else None, CAPTURE_BATCH)
            self._capture_more = n >= CAPTURE_BATCH
        if (record_ready or self._record_more) and self.recorder is not None \
                and self._record_capture is not None:
            # A batch per wake-up, like the replay's capture, and none while the replay is
            # behind (shedding): recording loses packets then, replay never. A full batch
            # reads on at the next wake-up (epoll may not signal a partly read ring block).
            n = 0
            if not self.table.shed:
                try:
                    n = self._record_capture.dispatch_ts(self.recorder.packet, CAPTURE_BATCH)
                except Exception:
                    self._internal_error("a recorded packet")
            self._record_more = n >= CAPTURE_BATCH
        for conn in readable:
            try:
                records = conn.receive()
            except WireError as exc:
                self._drop(conn, str(exc))
                continue
            if records is None:
                self._drop(conn, "closed by the assistant")
                continue
            for rec in records:
                if rec[0]:
                    self._on_record(rec, now)
                else:  # the nfreplay extension's notices start with 0 (records: 0x45)
                    self._on_notice(conn, rec, now)
        try:
            self.table.tick(now, self.out)
            self.table.flush(now, self.out)
        except Exception:
            self._internal_error("the session timers")
        if self.table.withdrawn:
            # Before this wake-up's announcements: a session over and the client's next one
            # on that port (started at once) are withdrawn and announced in that order.
            self._withdraw()
        self._emit()
        self._flush_channel()
        if self.channel_up < self._wanted_conns:
            self.connect(now)

    def _flush_channel(self) -> None:
        """Send what the control connections buffered; wait for writability only where the
        kernel took less than all of it."""
        sel, fds = self._sel, self._fds
        for conn in self._conns:
            if conn.out and not conn.flush():
                self._drop(conn, "not reading (backlog full)")
                continue
            events = selectors.EVENT_READ | (selectors.EVENT_WRITE if conn.out else 0)
            fd = fds.get(conn)
            if fd is not None:
                key = sel.get_key(fd)
                if key.events != events:
                    sel.modify(fd, events, key.data)

    def _shed(self, lag: float) -> None:
        """Before each capture batch: start or stop refusing new sessions by how far the
        capture lags; while it lasts, say so in one line every 10 s."""
        now = self.now
        table = self.table
        if lag > self.shed_lag:
            table.shed = True
        elif table.shed and lag < self.shed_lag / 2:
            table.shed = False
        if table.shed and now >= self._shed_log_at:
            self._shed_log_at = now + 10.0
            log.warning("overloaded: the capture runs %.0f ms behind the wire (limit %.0f ms): "
                        "new sessions are refused so that admitted ones complete (%d refused "
                        "since the last report; sessions_shed)", lag * 1e3,
                        self.shed_lag * 1e3, self.c.sessions_shed - self._shed_logged)
            self._shed_logged = self.c.sessions_shed

    def _emit(self) -> None:
        """Put this wake-up's announcements on the control channel, flush it once, then send
        the packets: every CLIENT_ADD leaves before the SYN it announces."""
        out = self.out
        if not out:
            return
        announced = False
        unannounced: set[tuple[int, int]] = set()
        recorder = self.recorder
        for cmd in out:
            if type(cmd) is Announce:
                if recorder is not None and cmd.session is not None:
                    try:
                        recorder.announce(cmd.session, time.time())
                    except Exception:
                        self._internal_error("the recording of a session")
                msg = channel.encode_client_add(cmd.client_ip, cmd.client_port,
                                                cmd.target_ip, cmd.target_port)
                ok = False
                for a in self.assistants:
                    ok = a.announce(msg) or ok
                if not ok:
                    self.announces_failed += 1
                    unannounced.add((cmd.client_ip, cmd.client_port))
                announced = True
        if announced:
            for conn in self._conns:
                if conn.out:
                    conn.flush()
        send = self.sender.send
        names = self._names
        sent = 0
        for cmd in out:
            if type(cmd) is bytearray:
                if unannounced and self._unannounced_syn(cmd, unannounced):
                    continue
                dst = bytes(cmd[16:20])
                name = names.get(dst)
                if name is None:
                    name = names[dst] = socket.inet_ntoa(dst)
                if send(cmd, name):
                    sent += 1
        self.c.packets_sent += sent
        out.clear()

    def _withdraw(self) -> None:
        """CLIENT_DEL for every session over since the last wake-up: an assistant that speaks
        the extension lets another online host take its client address and port at once."""
        if any(c.notices for c in self._conns):  # none: a compat assistant is never sent one
            for ip, port, tip, tport in self.table.withdrawn:
                msg = channel.encode_client_del(ip, port, tip, tport)
                for a in self.assistants:
                    a.withdraw(msg)
        self.table.withdrawn.clear()

    def _unannounced_syn(self, pkt: bytearray, unannounced: set[tuple[int, int]]) -> bool:
        """A SYN whose CLIENT_ADD could not be queued stays here: the target's SYN-ACK would
        reach no one. The session's SYN timer announces it again with the next try."""
        tcp = (pkt[0] & 0x0F) * 4
        if not pkt[tcp + 13] & SYN:
            return False
        key = (int.from_bytes(pkt[12:16], "big"), int.from_bytes(pkt[tcp:tcp + 2], "big"))
        if key not in unannounced:
            return False
        self.c.syns_unannounced += 1
        return True

    def _drop(self, conn: Conn, why: str) -> None:
        log.warning("control channel %s: %s", conn.peer, why)
        conn.close()
        self.channel_drops += 1
        self._watch()
        self._next_connect = min(self._next_connect, self.clock() + 0.2)

    def shutdown(self) -> None:
        """Reset every live session on the target and say so to it before closing."""
        if log.isEnabledFor(logging.DEBUG):
            for s in self.table.sessions.values():
                if not s.done:
                    log.debug("live at shutdown: %s:%d state %d pending %d unacked %d "
                              "waiting %s held %s fin_sent %s target_fin %s in flight %d",
                              tcpip.int2ip(s.client_ip), s.client_port, s.state,
                              len(s.pending), len(s.unacked), s.waiting, s.held_by_response,
                              s.fin_sent, s.target_fin, (s.snd_nxt - s.t_una) % 2**32)
        self.table.shutdown(self.clock(), self.out)
        self._emit()
        for a in self.assistants:
            for live in a.live():
                live.flush()
            for conn in a.conns:
                if conn is not None:
                    conn.close()
        self._sel.close()

    def next_timeout(self, cap: float = 0.2) -> float:
        wake = self.table.next_wake() - self.clock()
        return max(0.0, min(cap, wake))
