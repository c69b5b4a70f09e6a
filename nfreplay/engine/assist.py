"""The assist role's loop: NFQUEUE verdicts → response records → the announcing connection.

Each queued reply gets exactly one verdict, DROP (passlisted replies never reach the queue:
the rule manager ACCEPTs them before the NFQUEUE rule). Its header becomes a 64-byte record,
routed to the control connection that announced its session; records are batched per
connection and sent as combined frames once per wake-up.
"""

from __future__ import annotations

import logging
import select
import time
from collections.abc import Callable

from nfreplay.adapters.channel import Conn, Listener
from nfreplay.errors import WireError
from nfreplay.proto import channel, tcpip
from nfreplay.proto.tcpip import RST, SYN
from nfreplay.routing import Router, route_key
from nfreplay.stats import Counters

log = logging.getLogger("nfreplay.assist")


class AssistCounters(Counters):
    """What nfreplay-assist counts."""

    packets_queued: int
    packets_bad: int
    records_sent: int
    records_unrouted: int
    records_parked: int
    parked_delivered: int
    frames_sent: int
    client_adds: int
    connections_accepted: int
    connections_closed: int
    connections_live: int
    routes: int
    verdict_errors: int
    records_dropped_backlog: int


class AssistEngine:
    """`queue` is an adapters.nfqueue.Queue built with `self.on_packet` as its callback
    (or anything with fileno()/drain())."""

    def __init__(self, listener: Listener, *, clock: Callable[[], float] = time.monotonic,
                 counters: AssistCounters | None = None) -> None:
        self.listener = listener
        self.queue: object = None
        self.clock = clock
        self.c = counters if counters is not None else AssistCounters()
        self.router: Router[Conn] = Router()
        self.conns: list[Conn] = []
        self._pending: dict[Conn, list[bytes]] = {}
        self.now = clock()
        self._next_expire = 0.0

    # ------------------------------------------------------------------ hot path

    def on_packet(self, payload: bytes) -> bool:
        """NFQUEUE callback: report the reply and DROP it (returns False = DROP)."""
        self.c.packets_queued += 1
        try:
            seg = tcpip.parse(payload)
            record = channel.make_record(payload)
        except WireError:
            self.c.packets_bad += 1
            return False
        key = route_key(seg.dst, seg.dport, seg.src, seg.sport)
        conn = self.router.lookup(key)
        if conn is not None:
            batch = self._pending.get(conn)
            if batch is None:
                self._pending[conn] = [record]
            else:
                batch.append(record)
        elif seg.flags & (SYN | RST) and self.router.park(key, record, self.now):
            # A SYN-ACK or RST can beat the CLIENT_ADD that announces its session.
            self.c.records_parked += 1
        else:
            self.c.records_unrouted += 1
        return False

    # ------------------------------------------------------------------ the loop

    def step(self, timeout: float) -> None:
        rlist: list = [self.listener, *self.conns]
        if self.queue is not None:
            rlist.append(self.queue)
        wlist = [c for c in self.conns if c.out]
        readable, _, _ = select.select(rlist, wlist, [], timeout)
        self.now = now = self.clock()
        if self.listener in readable:
            for conn in self.listener.accept():
                log.info("control channel: %s connected", conn.peer)
                self.conns.append(conn)
                self.c.connections_accepted += 1
        # Announcements first: replies queued in this same wake-up then find their route.
        for conn in list(self.conns):
            if conn in readable:
                self._read(conn, now)
        if self.queue is not None and self.queue in readable:
            self.queue.drain()  # type: ignore[attr-defined]
        self._send()
        if now >= self._next_expire:
            self._next_expire = now + 1.0
            self.router.expire(now)
        self.c.connections_live = len(self.conns)
        self.c.routes = len(self.router)

    def _read(self, conn: Conn, now: float) -> None:
        try:
            msgs = conn.receive()
        except WireError as exc:
            self._close(conn, str(exc))
            return
        if msgs is None:
            self._close(conn, "closed by peer")
            return
        if not conn.version_checked and conn.decoder.version is not None:  # type: ignore[attr-defined]
            # The version is advisory (intercept accepts any): say so once, keep serving.
            conn.version_checked = True
            if conn.decoder.version_mismatch:  # type: ignore[attr-defined]
                log.warning("control channel %s: peer speaks version %s, we speak %d",
                            conn.peer, conn.decoder.version, channel.VERSION)  # type: ignore[attr-defined]
        for m in msgs:
            if m.type != channel.TYPE_CLIENT_ADD:
                continue  # CLIENT_DEL is defined but never sent by tcpcopy; ignore others
            self.c.client_adds += 1
            key = route_key(m.clt_ip, m.clt_port, m.target_ip, m.target_port)
            parked = self.router.add(key, conn, now)
            if parked:
                self.c.parked_delivered += len(parked)
                self._pending.setdefault(conn, []).extend(parked)

    def _send(self) -> None:
        pending = self._pending
        for conn, records in pending.items():
            if conn.closed:
                self.c.records_dropped_backlog += len(records)
                continue
            conn.queue(channel.encode_frames(records))
            self.c.records_sent += len(records)
            self.c.frames_sent += (len(records) + channel.COMB_MAX - 1) // channel.COMB_MAX
        pending.clear()
        for conn in list(self.conns):
            if conn.out and not conn.flush():
                self._close(conn, "not reading (backlog full)")

    def _close(self, conn: Conn, why: str) -> None:
        log.info("control channel %s: %s", conn.peer, why)
        conn.close()
        self.router.close(conn)
        self.conns.remove(conn)
        self.c.connections_closed += 1

    def shutdown(self) -> None:
        for conn in list(self.conns):
            conn.flush()
            conn.close()
        self.conns.clear()
        self.listener.close()
