"""Which control-channel connection gets a response record (the assist side's router).

Pure and clock-driven like the session machine. It mirrors intercept's router and delay table
(reference §1.6, §2.5) with three fixes:
- keys are exact (client ip, client port, target ip, target port), not an additive 32-bit hash,
  so two sessions never share a route by collision;
- a route whose connection closed is removed with it (intercept keeps the stale fd), and a
  live route belongs to the connection that announced it first (intercept: the last one);
  once its session is over it passes to the next announcer (fan-in: one client talking to
  several online hosts reuses its ports across them);
- routes age out: two generations that rotate every `idle` seconds, so a route unused (neither
  announced nor hit) for two periods disappears without any per-record bookkeeping.

A record for an unknown session is parked only if it is a SYN-ACK or RST (these race ahead of
their CLIENT_ADD); parked records are delivered when the route appears, or dropped after
`park_timeout`. Everything else without a route is dropped and counted by the caller.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Generic, Hashable, TypeVar

C = TypeVar("C", bound=Hashable)
INF = float("inf")


def route_key(client_ip: int, client_port: int, target_ip: int, target_port: int) -> int:
    """One exact int for the 4-tuple (Python ints do not overflow)."""
    return (client_ip << 64) | (client_port << 48) | (target_ip << 16) | target_port


class Router(Generic[C]):
    """Route table from session key to connection, with parking of early SYN-ACK/RST.

    A route belongs to the connection that announced it first, for as long as it lives: an
    announcement of it from another connection is refused (the target host runs untrusted
    code and may reach the assistant: it must not take a session's replies). It ends when
    it ages out or when its connection closes (a connection's routes go with it), so a
    tcpcopy that reconnects announces its sessions afresh. Routes are capped in total and
    per connection.

    A route is *released* once its session is over: its owner said so (CLIENT_DEL,
    `withdraw`), or the target reset it, or, for an owner that never says so (tcpcopy), a
    moment after the target's FIN (`release`: the owner's last exchange, the ACK of its own
    FIN, still reaches it). Records still go to the owner, but the next announcement takes
    the route over, from any connection: the client reused its port, possibly towards
    another online host. Tcpcopy never sends CLIENT_DEL and the assistant never sees the
    client's side of the close, so without this a route stayed with its first owner for up
    to two `idle` periods, and every later session of another online host on that client
    port lost its replies (issue 22). An announcement of a live route from another
    connection is a collision (`last_refusal` = "owned"): two online hosts replay the same
    client address and port to the target at once, and the target can hold only one."""

    def __init__(self, idle: float = 600.0, park_timeout: float = 30.0,
                 max_parked: int = 65536, max_routes: int = 1_000_000,
                 max_per_connection: int = 262_144) -> None:
        self.idle = idle
        self.park_timeout = park_timeout
        self.max_parked = max_parked
        self.max_routes = max_routes
        self.max_per_connection = max_per_connection
        self._current: dict[int, C] = {}
        self._previous: dict[int, C] = {}
        self._rotated = 0.0
        self._by_conn: dict[C, set[int]] = {}
        # key -> (time parked, [records]); insertion order = age, for cheap expiry.
        self._parked: OrderedDict[int, tuple[float, list[bytes]]] = OrderedDict()
        self.parked_count = 0
        self.parked_expired = 0
        self.parked_overflow = 0
        self.refused_owned = 0  # announced by another connection than the route's owner
        self.refused_full = 0  # a route cap was reached
        self.taken_over = 0  # released routes another connection announced (took over)
        self.last_refusal = ""  # why the last refused add was refused: "owned" or "full"
        # Routes whose session is over -> from when another connection may take them over.
        self._released: dict[int, float] = {}

    def __len__(self) -> int:
        return len(self._current) + len(self._previous)

    def add(self, key: int, conn: C, now: float) -> list[bytes] | None:
        """A CLIENT_ADD arrived on `conn`: the parked records now owed to it (in order), or
        None if refused (another connection owns the route, or a cap is reached)."""
        self._maybe_rotate(now)
        owner = self._current.get(key)
        if owner is None:
            owner = self._previous.pop(key, None)
            if owner is not None:
                self._current[key] = owner
        if owner is None:
            mine = self._by_conn.get(conn)
            if len(self) >= self.max_routes or (
                    mine is not None and len(mine) >= self.max_per_connection):
                self.refused_full += 1
                self.last_refusal = "full"
                return None
            if mine is None:
                mine = self._by_conn[conn] = set()
            mine.add(key)
            self._current[key] = conn
        elif owner != conn:
            if now < self._released.get(key, INF):
                self.refused_owned += 1
                self.last_refusal = "owned"
                return None
            self._take_over(key, owner, conn)
        else:
            self._released.pop(key, None)  # announced again by its owner: live again
        parked = self._parked.pop(key, None)
        if parked is None:
            return []
        self.parked_count -= len(parked[1])
        return parked[1]

    def _take_over(self, key: int, owner: C, conn: C) -> None:
        old = self._by_conn.get(owner)
        if old is not None:
            old.discard(key)
            if not old:
                del self._by_conn[owner]
        mine = self._by_conn.get(conn)
        if mine is None:
            mine = self._by_conn[conn] = set()
        mine.add(key)
        self._current[key] = conn
        del self._released[key]
        self.taken_over += 1

    def release(self, key: int, at: float) -> None:
        """The target closed or reset `key`'s connection: from `at` on, the next announcement
        of it may take it over."""
        if key in self._current or key in self._previous:
            if at < self._released.get(key, INF):
                self._released[key] = at

    def withdraw(self, key: int, conn: C, now: float) -> None:
        """CLIENT_DEL from `conn`: its session on `key` is over (from anyone else: ignored)."""
        if self._current.get(key, self._previous.get(key)) == conn:
            self._released[key] = now

    def owner(self, key: int) -> C | None:
        """Who holds `key` now (no promotion, for the cold path)."""
        conn = self._current.get(key)
        return conn if conn is not None else self._previous.get(key)

    def lookup(self, key: int) -> C | None:
        conn = self._current.get(key)
        if conn is None:
            conn = self._previous.pop(key, None)
            if conn is None:
                return None
            self._current[key] = conn  # promote: it is in use
        return conn

    def routes_of(self, conn: C) -> int:
        mine = self._by_conn.get(conn)
        return len(mine) if mine is not None else 0

    def is_parked(self, key: int) -> bool:
        """Whether records for `key` wait for its CLIENT_ADD."""
        return key in self._parked

    def park(self, key: int, record: bytes, now: float) -> bool:
        """Keep a SYN-ACK/RST record until its CLIENT_ADD arrives; False if full."""
        if self.parked_count >= self.max_parked:
            self.parked_overflow += 1
            return False
        entry = self._parked.get(key)
        if entry is None:
            self._parked[key] = (now, [record])
        else:
            entry[1].append(record)
        self.parked_count += 1
        return True

    def close(self, conn: C) -> None:
        """`conn` is gone: its routes go with it."""
        released = self._released
        for key in self._by_conn.pop(conn, ()):
            if self._current.pop(key, None) is None:
                self._previous.pop(key, None)
            released.pop(key, None)

    def expire(self, now: float) -> None:
        """Drop parked records older than park_timeout; rotate generations. Call ~1/s."""
        parked = self._parked
        limit = now - self.park_timeout
        while parked:
            key, (when, records) = next(iter(parked.items()))
            if when > limit:
                break
            del parked[key]
            self.parked_count -= len(records)
            self.parked_expired += len(records)
        self._maybe_rotate(now)

    def _maybe_rotate(self, now: float) -> None:
        if now - self._rotated < self.idle:
            return
        self._rotated = now
        released = self._released
        for key, owner in self._previous.items():  # unused for two periods: gone
            released.pop(key, None)
            mine = self._by_conn.get(owner)
            if mine is not None:
                mine.discard(key)
                if not mine:
                    del self._by_conn[owner]
        self._previous = self._current
        self._current = {}
