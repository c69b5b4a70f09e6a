"""Which captured connections are replayed, and as what: decided once per new connection.

Pure like the rest of `session/`: the table asks `admit()` when a captured connection would
open a session (its SYN, or its first data when joined mid-stream) and `targets_for()` /
`pairs_for()` for where it goes and from which client address.

Order of the checks, cheapest and most deliberate first: client filter (on the real client
behind LVS when the packet carries a TOA option), sampling, the new-sessions-per-second limit.
Each refusal has its own counter in the online counters (`sessions_filtered`,
`sessions_sampled_out`, `sessions_rate_limited`).
"""

from __future__ import annotations

from collections.abc import Mapping

from nfreplay.session.clientpool import PortAllocator
from nfreplay.session.filters import ClientFilter, PayloadPattern, toa
from nfreplay.proto.tcpip import Segment
from nfreplay.session.sampling import Sampler


class Selection:
    """The operator's choice of sessions (filters, sampling, limits, copies, client pool)."""

    def __init__(self, *, client_filter: ClientFilter | None = None,
                 sampler: Sampler | None = None, new_per_second: float | None = None,
                 copies: int = 1, pool: tuple[int, ...] = (),
                 targets: Mapping[int, tuple[int, int]] | None = None,
                 payload: PayloadPattern | None = None,
                 reuse_delay: float = 60.0,
                 port_range: tuple[int, int] = (1024, 65535)) -> None:
        if copies < 1:
            raise ValueError("copies must be at least 1")
        self.client_filter = client_filter
        self.sampler = sampler
        self.new_per_second = new_per_second
        self.copies = copies
        self.targets = dict(targets or {})
        self.payload = payload
        # Rewriting client addresses (a pool, or several copies) needs an allocator that
        # never hands out a pair still in use on the target.
        self.allocator = (PortAllocator(pool, port_range, reuse_delay=reuse_delay)
                          if pool or copies > 1 else None)
        self._tokens = new_per_second or 0.0
        self._refilled = -1.0
        self.toa_seen = 0

    @property
    def maps_clients(self) -> bool:
        return self.allocator is not None

    def admit(self, seg: Segment, now: float) -> str:
        """'' to replay the connection this packet opens, else the counter to bump."""
        if self.client_filter is not None:
            real = toa(seg)
            if real is not None:
                self.toa_seen += 1
            if not self.client_filter.accepts(real[0] if real else seg.src):
                return "sessions_filtered"
        if self.payload is not None and seg.payload_len and not self.first_request_ok(seg):
            return "sessions_filtered"  # a mid-stream start: its first data is at hand
        if self.sampler is not None and not self.sampler.keep(seg.src, seg.sport, now):
            return "sessions_sampled_out"
        if self.new_per_second:
            if self._refilled < 0:
                self._refilled = now
            self._tokens = min(self.new_per_second,
                               self._tokens + (now - self._refilled) * self.new_per_second)
            self._refilled = now
            if self._tokens < 1.0:
                return "sessions_rate_limited"
            self._tokens -= 1.0
        return ""

    def first_request_ok(self, seg: Segment) -> bool:
        """The first request matches the payload pattern (TCPGO's request_pattern)."""
        assert self.payload is not None
        return self.payload.matches(
            memoryview(seg.buf)[seg.payload_off:seg.payload_off + seg.payload_len])

    def target_for(self, service_port: int) -> tuple[int, int] | None:
        """The target of a service port when several are replayed; None: the default one."""
        return self.targets.get(service_port)

    def pairs_for(self, client_ip: int, client_port: int, now: float) -> list[tuple[int, int]]:
        """The (client ip, port) each copy uses towards the target; fewer than `copies` when
        the pool is exhausted (the caller counts the missing ones)."""
        if self.allocator is None:
            return [(client_ip, client_port)]
        pairs = []
        for copy in range(self.copies):
            pair = self.allocator.allocate(client_ip, client_port, copy, now)
            if pair is not None:
                pairs.append(pair)
        return pairs

    def release(self, pair: tuple[int, int], now: float) -> None:
        if self.allocator is not None:
            self.allocator.release(pair, now)
