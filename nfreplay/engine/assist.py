"""The assist role's loop: NFQUEUE verdicts → response records → the announcing connection.

Each queued reply gets exactly one verdict, DROP (passlisted replies never reach the queue:
the rule manager ACCEPTs them before the NFQUEUE rule). Its header becomes a 64-byte record,
routed to the control connection that announced its session; records are batched per
connection and sent as combined frames once per wake-up.

Fan-in (several online hosts, one assistant): a route whose session is over passes to the next
announcer (`Router`); an announcement of a route another host's live session holds is a
collision. An nfreplay-online that speaks the extension (`channel.FEATURE_NOTICES`) is told
(`NOTICE_COLLIDED`) and moves its session to another client port; a tcpcopy cannot be told,
so its session is not replayed: counted as `sessions_collided`, said once in a WARN line.
"""

from __future__ import annotations

import errno
import ipaddress
import logging
import selectors
import time
from collections.abc import Callable, Sequence
from typing import Protocol, cast

from nfreplay.adapters.channel import Conn, Listener
from nfreplay.errors import WireError
from nfreplay.proto import channel, tcpip
from nfreplay.proto.tcpip import FIN, RST, SYN
from nfreplay.engine.routing import Router, route_key
from nfreplay.counters import Counters
from nfreplay.limits import Limits

log = logging.getLogger("nfreplay.assist")

LOOPBACK = (ipaddress.IPv4Network("127.0.0.0/8"),)
# Seconds after the target's FIN until another online host may take the route of a session
# whose owner never says it is over (tcpcopy): its own FIN's ACK still reaches it.
FIN_GRACE = 2.0


class AssistCounters(Counters):
    """What nfreplay-assist counts."""

    levels = frozenset({"connections_live", "routes"})

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
    connections_backlog_full: int  # closed: more than limits.backlog queued, unread
    connections_refused: int  # not an allowed peer (assist.online), or a connection cap
    connections_stalled: int  # closed: no version message, or a message cut short
    announces_refused: int  # the session is owned by another connection, or a route cap
    announces_collided: int  # refused: another online host's live session holds the route
    sessions_collided: int  # of those, from a peer that cannot be told (tcpcopy): not replayed
    routes_taken_over: int  # a route whose session was over, announced by another connection
    notices_sent: int  # nfreplay extension: hellos and collision notices
    accept_errors: int  # accept() failed (EMFILE: out of descriptors), backed off
    internal_errors: int  # a bug met while handling a peer's message: that peer is closed


class Queue(Protocol):
    """What the loop needs of the NFQUEUE (adapters.nfqueue.Queue, built with
    `AssistEngine.on_packet` as its callback)."""

    def fileno(self) -> int: ...

    def drain(self) -> None: ...


class AssistEngine:
    """`queue` (set once bound) hands each queued reply to `on_packet`. Only peers in
    `allowed` may connect."""

    def __init__(self, listener: Listener | None, *, clock: Callable[[], float] = time.monotonic,
                 counters: AssistCounters | None = None,
                 allowed: Sequence[ipaddress.IPv4Network] = LOOPBACK,
                 limits: Limits = Limits()) -> None:
        self.listener = listener
        self.queue: Queue | None = None
        self.clock = clock
        self.c = counters if counters is not None else AssistCounters()
        self.allowed = tuple(allowed)
        self.limits = limits
        self.router: Router[Conn] = Router(max_parked=limits.parked, max_routes=limits.routes,
                                           max_per_connection=limits.routes_per_connection)
        self._collided_said = False
        self._notices_pending = 0  # notices among the pending records (not records_sent)
        self.conns: list[Conn] = []
        self._pending: dict[Conn, list[bytes]] = {}
        self.now = clock()
        self._next_expire = 0.0
        self._sel = selectors.DefaultSelector()
        self._queue_fd = -1
        self._accept_paused_until = 0.0
        self._said: dict[str, float] = {}  # what was logged when, for once-a-minute lines
        if listener is not None:
            self._sel.register(listener.fileno(), selectors.EVENT_READ, "listener")

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
            if seg.flags & (FIN | RST):
                # The session closes: the client may reuse its port, also towards another
                # online host, whose announcement must then get the route. A peer that
                # speaks the extension says when its session is over (CLIENT_DEL); for one
                # that does not, the route waits a moment after the FIN for its last ACK.
                if seg.flags & RST:
                    self.router.release(key, self.now)
                elif not conn.notices:
                    self.router.release(key, self.now + FIN_GRACE)
        elif seg.flags & (SYN | RST) and self.router.park(key, record, self.now):
            # A SYN-ACK or RST can beat the CLIENT_ADD that announces its session.
            self.c.records_parked += 1
        else:
            self.c.records_unrouted += 1
        return False

    # ------------------------------------------------------------------ the loop

    def step(self, timeout: float) -> None:
        if self.queue is not None and self._queue_fd < 0:
            self._queue_fd = self.queue.fileno()
            self._sel.register(self._queue_fd, selectors.EVENT_READ, "queue")
        events = self._sel.select(timeout)
        self.now = now = self.clock()
        queue_ready = False
        readable: list[Conn] = []
        for key, _ in events:
            if key.data == "listener":
                self._accept(now)
            elif key.data == "queue":
                queue_ready = True
            else:
                readable.append(key.data)
        # Announcements first: replies queued in this same wake-up then find their route.
        for conn in readable:
            if not conn.closed:
                try:
                    self._read(conn, now)
                except Exception:  # a bug, not bad bytes: never let a peer end the loop
                    self.c.internal_errors += 1
                    if self.c.internal_errors <= 5:
                        log.warning("internal error while reading %s (counted as "
                                    "internal_errors; --debug shows the traceback)", conn.peer,
                                    exc_info=log.isEnabledFor(logging.DEBUG))
                    if not conn.closed:
                        self._close(conn, "closed after an internal error")
        if queue_ready and self.queue is not None:
            self.queue.drain()
        self._send()
        if now >= self._next_expire:
            self._next_expire = now + 1.0
            self.router.expire(now)
            self._close_stalled(now)
            if (self._accept_paused_until and now >= self._accept_paused_until
                    and self.listener is not None):
                self._accept_paused_until = 0.0
                self._sel.register(self.listener.fileno(), selectors.EVENT_READ, "listener")
        self.c.connections_live = len(self.conns)
        self.c.routes = len(self.router)

    def _accept(self, now: float) -> None:
        assert self.listener is not None
        accepted, err = self.listener.accept()
        for sock, ip in accepted:
            why = self._refusal(ip)
            if why:
                sock.close()
                self.c.connections_refused += 1
                self._once_a_minute(f"refused {ip}", now, "control channel: refused %s: %s",
                                    ip, why)
                continue
            conn = Conn(sock, f"{ip}:{sock.getpeername()[1]}", channel.MessageDecoder())
            conn.since = now
            self._sel.register(conn.fileno(), selectors.EVENT_READ, conn)
            self.conns.append(conn)
            self.c.connections_accepted += 1
            log.info("control channel: %s connected", conn.peer)
        if err:
            # Out of descriptors (EMFILE, ENFILE) or memory: the pending connection stays in
            # the backlog and would wake us at once, forever. Stop listening for a second.
            self.c.accept_errors += 1
            self._accept_paused_until = now + 1.0
            self._sel.unregister(self.listener.fileno())
            self._once_a_minute("accept", now, "control channel: accept: %s; retrying in 1 s",
                                errno.errorcode.get(err, str(err)))

    def _refusal(self, ip: str) -> str:
        """Why a peer may not connect ("" if it may)."""
        addr = ipaddress.IPv4Address(ip)
        if not any(addr in net for net in self.allowed):
            return "not in assist.online (the online hosts allowed to connect)"
        if len(self.conns) >= self.limits.connections:
            return f"{len(self.conns)} connections already (assist.max_connections)"
        prefix = ip + ":"
        if sum(c.peer.startswith(prefix) for c in self.conns) >= self.limits.connections_per_peer:
            return "too many connections from it (assist.max_connections_per_peer)"
        return ""

    def _once_a_minute(self, what: str, now: float, msg: str, *args: object) -> None:
        if now - self._said.get(what, -60.0) >= 60.0:
            self._said[what] = now
            log.warning(msg, *args)
            if len(self._said) > 1024:  # many peers: forget the oldest lines said
                self._said = dict(sorted(self._said.items(), key=lambda kv: kv[1])[-512:])

    def _read(self, conn: Conn, now: float) -> None:
        try:
            msgs = conn.receive()
        except WireError as exc:
            self._close(conn, str(exc))
            return
        if msgs is None:
            self._close(conn, "closed by peer")
            return
        decoder = cast(channel.MessageDecoder, conn.decoder)
        if not conn.version_checked and decoder.version is not None:
            # The version is advisory (intercept accepts any): say so once, keep serving.
            conn.version_checked = True
            if decoder.version_mismatch:
                log.warning("control channel %s: peer speaks version %s, we speak %d",
                            conn.peer, decoder.version, channel.VERSION)
        if not conn.notices and decoder.features & channel.FEATURE_NOTICES:
            # An nfreplay-online offered the extension: accept it, before any record.
            conn.notices = True
            self._notice(conn, channel.NOTICE_HELLO, bytes(channel.MSG_SIZE))
        if msgs or not decoder.buffered:
            conn.since = now  # progress: a whole message, or nothing left half-sent
        router = self.router
        for m in msgs:
            if m.type != channel.TYPE_CLIENT_ADD:
                if m.type == channel.TYPE_CLIENT_DEL:  # tcpcopy never sends it
                    router.withdraw(route_key(m.clt_ip, m.clt_port, m.target_ip,
                                              m.target_port), conn, now)
                continue
            self.c.client_adds += 1
            key = route_key(m.clt_ip, m.clt_port, m.target_ip, m.target_port)
            taken = router.taken_over
            parked = router.add(key, conn, now)
            if parked is None:
                self.c.announces_refused += 1
                if router.last_refusal == "owned":
                    self._collided(conn, m, now)
                continue
            if router.taken_over != taken:
                self.c.routes_taken_over += 1
            if parked:
                self.c.parked_delivered += len(parked)
                self._pending.setdefault(conn, []).extend(parked)

    def _collided(self, conn: Conn, m: channel.ClientMessage, now: float) -> None:
        """`conn` announced a session whose client address and port another online host's
        live session holds on the target: tell it (it moves to another port), or count it."""
        self.c.announces_collided += 1
        if conn.notices:
            self._notice(conn, channel.NOTICE_COLLIDED, channel.encode_client_add(*(
                m.clt_ip, m.clt_port, m.target_ip, m.target_port)))
            return
        self.c.sessions_collided += 1
        if not self._collided_said:
            self._collided_said = True
            owner = self.router.owner(route_key(m.clt_ip, m.clt_port, m.target_ip,
                                                m.target_port))
            log.warning(
                "control channel %s: a session of client %s:%d is not replayed: %s replays "
                "the same client address and port to the target right now, and this peer (a "
                "tcpcopy, or an nfreplay-online without the fan-in extension) cannot be told "
                "to move it (counted as sessions_collided; said once). Give each online host "
                "its own client addresses (tcpcopy -c, online.client_pool), or run a current "
                "nfreplay-online there: it moves such a session to another port",
                conn.peer, tcpip.int2ip(m.clt_ip), m.clt_port,
                owner.peer if owner is not None else "another online host")

    def _notice(self, conn: Conn, kind: int, about: bytes) -> None:
        self._pending.setdefault(conn, []).append(channel.encode_notice(kind, about))
        self.c.notices_sent += 1
        self._notices_pending += 1

    def _close_stalled(self, now: float) -> None:
        limit = now - self.limits.stall
        for conn in list(self.conns):
            decoder = cast(channel.MessageDecoder, conn.decoder)
            if conn.since < limit and (not decoder.greeted or decoder.buffered):
                self.c.connections_stalled += 1
                self._close(conn, "no version message, or a message cut short, for "
                                  f"{self.limits.stall:g} s")

    def _send(self) -> None:
        pending = self._pending
        notices = self._notices_pending  # among the records: counted in notices_sent
        for conn, records in pending.items():
            n = len(records)
            if notices:
                n -= sum(1 for r in records if not r[0])
            if conn.closed:
                self.c.records_dropped_backlog += n
                continue
            conn.queue(channel.encode_frames(records))
            self.c.records_sent += n
            self.c.frames_sent += (len(records) + channel.COMB_MAX - 1) // channel.COMB_MAX
        pending.clear()
        self._notices_pending = 0
        for conn in list(self.conns):
            if not conn.out:
                if conn.writing:
                    conn.writing = False
                    self._sel.modify(conn.fileno(), selectors.EVENT_READ, conn)
                continue
            if not conn.flush(self.limits.backlog):
                self.c.connections_backlog_full += 1
                self._close(conn, "not reading (backlog full)")
            elif conn.out and not conn.writing:
                conn.writing = True
                self._sel.modify(conn.fileno(), selectors.EVENT_READ | selectors.EVENT_WRITE,
                                 conn)

    def _close(self, conn: Conn, why: str) -> None:
        log.info("control channel %s: %s", conn.peer, why)
        try:
            self._sel.unregister(conn.fileno())
        except (KeyError, ValueError):
            pass
        conn.close()
        self.router.close(conn)
        self.conns.remove(conn)
        self.c.connections_closed += 1

    def shutdown(self) -> None:
        for conn in list(self.conns):
            conn.flush()
            conn.close()
        self.conns.clear()
        self._sel.close()
        if self.listener is not None:
            self.listener.close()
