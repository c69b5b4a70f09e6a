"""Which control-channel connection gets a response record (the assist side's router).

Pure and clock-driven like the session machine. It mirrors intercept's router and delay table
(reference §1.6, §2.5) with three fixes:
- keys are exact (client ip, client port, target ip, target port), not an additive 32-bit hash,
  so two sessions never share a route by collision;
- a route whose connection closed is treated as missing (intercept keeps the stale fd);
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


def route_key(client_ip: int, client_port: int, target_ip: int, target_port: int) -> int:
    """One exact int for the 4-tuple (Python ints do not overflow)."""
    return (client_ip << 64) | (client_port << 48) | (target_ip << 16) | target_port


class Router(Generic[C]):
    """Route table from session key to connection, with parking of early SYN-ACK/RST."""

    def __init__(self, idle: float = 600.0, park_timeout: float = 30.0,
                 max_parked: int = 65536) -> None:
        self.idle = idle
        self.park_timeout = park_timeout
        self.max_parked = max_parked
        self._current: dict[int, C] = {}
        self._previous: dict[int, C] = {}
        self._rotated = 0.0
        self._closed: set[C] = set()
        # key -> (time parked, [records]); insertion order = age, for cheap expiry.
        self._parked: OrderedDict[int, tuple[float, list[bytes]]] = OrderedDict()
        self.parked_count = 0
        self.parked_expired = 0
        self.parked_overflow = 0

    def __len__(self) -> int:
        return len(self._current) + len(self._previous)

    def add(self, key: int, conn: C, now: float) -> list[bytes]:
        """A CLIENT_ADD arrived on `conn`; returns parked records now owed to it (in order)."""
        self._maybe_rotate(now)
        self._current[key] = conn
        self._previous.pop(key, None)
        parked = self._parked.pop(key, None)
        if parked is None:
            return []
        self.parked_count -= len(parked[1])
        return parked[1]

    def lookup(self, key: int) -> C | None:
        conn = self._current.get(key)
        if conn is None:
            conn = self._previous.pop(key, None)
            if conn is None:
                return None
            self._current[key] = conn  # promote: it is in use
        if conn in self._closed:
            return None
        return conn

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
        """`conn` is gone: its routes stop resolving (they age out later)."""
        self._closed.add(conn)

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
        self._previous = self._current
        self._current = {}
        # Closed connections cannot appear in routes older than two generations.
        live = set(self._previous.values())
        self._closed &= live
