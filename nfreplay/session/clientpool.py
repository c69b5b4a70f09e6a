"""Client addresses towards the target: the pool of rewrite addresses (tcpcopy ``-c``), a sticky
map onto it, and an allocator of (client ip, client port) pairs for amplified copies
(tcpcopy ``-n``) that never hands out a pair that is in use.

Invariants:

* ``PortAllocator`` never returns a pair that is live (allocated and not released) or in
  quarantine (released less than ``reuse_delay`` seconds ago). Every live pair was returned by
  ``allocate`` exactly once since its last ``release``.
* The allocator has no clock: ``now`` comes with each call. A ``now`` earlier than a previous
  one is treated as that previous one, so quarantine never ends early.
* Addresses and ports are host-order ints; a pair is ``(ip, port)``. Internally a pair is the
  int ``ip << 16 | port``, which hashes faster than a tuple.

Why not tcpcopy's scheme: ``-n`` shifts the source port by ``(2i - 1) << 5`` plus a random
offset, and ``-c`` maps clients by a 16-bit key; both collide (two live sessions with the same
address pair towards the target) and the maintainers call amplification "best effort". Here a
collision is impossible by construction; a full pool is counted (``failed``) instead.
"""

from __future__ import annotations

import ipaddress
import itertools
from collections import deque
from collections.abc import Iterable, Sequence

from nfreplay.errors import ConfigError

__all__ = ["MAX_POOL", "parse_pool", "ClientMap", "PortAllocator"]

#: Most addresses a pool may hold (a /12). More is almost surely a typo (a /8 for a /24), and
#: the pool is a tuple in memory.
MAX_POOL = 1 << 20

# Source addresses no target accepts: "this network", multicast and the reserved 240/4 (which
# holds the limited broadcast address).
_UNUSABLE = (
    ipaddress.IPv4Network("0.0.0.0/8"),
    ipaddress.IPv4Network("224.0.0.0/4"),
    ipaddress.IPv4Network("240.0.0.0/4"),
)


def _addr(text: str, spec: str, key: str) -> int:
    try:
        return int(ipaddress.IPv4Address(text))
    except ValueError:
        raise ConfigError(f"{key}: {spec!r} is not an IPv4 address, range or CIDR") from None


def _interval(spec: str, key: str) -> tuple[int, int, bool]:
    """(first, last, is_network) of one spec; ``is_network`` is True for a CIDR of /30 or
    shorter, whose network and broadcast addresses are left out of a pool."""
    if "/" in spec:
        try:
            net = ipaddress.IPv4Network(spec, strict=True)
        except ValueError as exc:
            if "host bits set" in str(exc):
                loose = ipaddress.IPv4Network(spec, strict=False)
                raise ConfigError(
                    f"{key}: {spec!r} has host bits set (did you mean {loose}?)"
                ) from None
            raise ConfigError(f"{key}: {spec!r} is not an IPv4 CIDR") from None
        first, last = int(net.network_address), int(net.broadcast_address)
        return first, last, net.prefixlen <= 30
    if spec.endswith(".x"):
        # tcpcopy -c: "a.b.c.x" is a.b.c.1 to a.b.c.254.
        base = _addr(spec[:-1] + "0", spec, key)
        return base + 1, base + 254, False
    if "-" in spec:
        lo_text, _, hi_text = spec.partition("-")
        lo = _addr(lo_text.strip(), spec, key)
        hi_text = hi_text.strip()
        if hi_text.isdigit() and int(hi_text) <= 255:
            hi = (lo & 0xFFFFFF00) | int(hi_text)  # a.b.c.d-e: the last octet
        else:
            hi = _addr(hi_text, spec, key)
        if hi < lo:
            raise ConfigError(f"{key}: range {spec!r} ends before it starts")
        return lo, hi, False
    ip = _addr(spec, spec, key)
    return ip, ip, False


def _split(specs: Iterable[str], key: str) -> list[str]:
    if isinstance(specs, str):
        # A lone string would be iterated as characters; say what is wrong instead.
        raise TypeError(f"{key}: give a sequence of specs, not one string")
    out: list[str] = []
    for spec in specs:
        if not isinstance(spec, str):
            raise TypeError(f"{key}: spec {spec!r} is not a string")
        # tcpcopy takes "-c a,b,c"; accept that inside one spec as well.
        parts = [part.strip() for part in spec.split(",")]
        if not all(parts):
            raise ConfigError(f"{key}: empty address in {spec!r}")
        out.extend(parts)
    return out


def _subtract(first: int, last: int, excluded: list[tuple[int, int]]) -> list[range]:
    """``[first, last]`` minus the sorted intervals ``excluded``, as ranges in ascending order."""
    out: list[range] = []
    for lo, hi in excluded:
        if hi < first or lo > last:
            continue
        if lo > first:
            out.append(range(first, lo))
        first = max(first, hi + 1)
    if first <= last:
        out.append(range(first, last + 1))
    return out


def parse_pool(
    specs: Sequence[str], exclude: Iterable[str] = (), *, key: str = "client pool"
) -> tuple[int, ...]:
    """The client address pool described by ``specs``, in order of first appearance.

    A spec is an IPv4 address (``10.1.0.7``), a range (``10.1.0.10-10.1.0.20``, or
    ``10.1.0.10-20`` for the last octet), a CIDR (``10.1.0.0/24``; the network and broadcast
    addresses of a /30 or shorter are left out), or tcpcopy's ``10.1.0.x`` (.1 to .254). Specs
    may also be comma-separated in one string. Duplicates are dropped. Addresses that ``exclude``
    covers (same syntax; typically the target addresses, a CIDR excludes all of it) are left out.

    Raises ``ConfigError``, in one line that starts with ``key`` and quotes the spec, for a bad
    spec, an address that cannot be a client source (0/8, multicast, 240/4), a pool of more than
    ``MAX_POOL`` addresses, or an empty pool.
    """
    intervals = [(spec, *_interval(spec, key)) for spec in _split(specs, key)]
    size = sum(last - first + 1 for _spec, first, last, _net in intervals)
    if size > MAX_POOL:
        raise ConfigError(f"{key}: {size} addresses exceed the limit of {MAX_POOL}")
    for spec, first, last, _net in intervals:
        for bad in _UNUSABLE:
            if first <= int(bad.broadcast_address) and last >= int(bad.network_address):
                raise ConfigError(f"{key}: {spec!r} includes {bad}, not usable as a client address")
    excluded = sorted(
        (lo, hi) for lo, hi, _net in (
            _interval(spec, f"{key} exclude") for spec in _split(exclude, f"{key} exclude")
        )
    )  # fmt: skip
    ranges: list[range] = []
    for _spec, first, last, is_network in intervals:
        if is_network:
            first, last = first + 1, last - 1
        ranges.extend(_subtract(first, last, excluded))
    # dict.fromkeys: deduplicated in order of first appearance, at C speed for a /12.
    pool = tuple(dict.fromkeys(itertools.chain.from_iterable(ranges)))
    if not pool:
        raise ConfigError(f"{key}: no address left in {', '.join(specs)!r}" + (
            " after excluding the targets" if excluded else ""
        ))  # fmt: skip
    return pool


class ClientMap:
    """Maps each original client IP to a pool address: sticky for the life of the map, round
    robin over ``pool`` in the order clients first appear.

    Like tcpcopy ``-c`` but keyed by the whole address, so two clients never share an entry by a
    hash collision. The map grows by one entry per distinct client IP (about 100 bytes each).
    Raises ``ValueError`` for an empty pool.
    """

    __slots__ = ("pool", "_map", "_next")

    def __init__(self, pool: Sequence[int]) -> None:
        if not pool:
            raise ValueError("ClientMap: empty pool")
        self.pool = tuple(pool)
        self._map: dict[int, int] = {}
        self._next = 0

    def index(self, original_ip: int) -> int:
        """The position in ``pool`` of the address ``original_ip`` maps to (assigned on first
        use)."""
        i = self._map.get(original_ip)
        if i is None:
            i = self._map[original_ip] = self._next
            self._next = (i + 1) % len(self.pool)
        return i

    def map_ip(self, original_ip: int) -> int:
        """The pool address for ``original_ip``; the same one on every call."""
        return self.pool[self.index(original_ip)]

    def __len__(self) -> int:
        """Number of original client IPs mapped so far."""
        return len(self._map)


class _PortState:
    """Free ports of one client IP. ``fresh`` is the next port of the range never handed out
    by the cursor; ``recycled`` holds ports back from quarantine, oldest first (``queued`` is its
    membership set, so a port is queued at most once and the deque stays bounded)."""

    __slots__ = ("fresh", "recycled", "queued")

    def __init__(self, first: int) -> None:
        self.fresh = first
        self.recycled: deque[int] = deque()
        self.queued: set[int] = set()


class PortAllocator:
    """Hands out (client ip, client port) pairs towards the target, each unique among the live
    ones, for every copy of every session.

    Policy, for ``allocate(original_ip, original_port, copy, now)``:

    * **Own addresses** (``pool_ips`` empty): every copy keeps the client's IP; copy 0 keeps the
      original port too if that pair is free, and the other copies (or copy 0 if its pair is
      taken) get the next free port of ``port_range`` on that IP.
    * **Pool** (``pool_ips`` given): copy 0 of a client whose own IP is in the pool keeps its
      original pair if free. Otherwise each client IP has a home position in the pool (round
      robin in order of first appearance, as ``ClientMap``), and copy ``c`` prefers pool address
      ``home + c``, with the original port if free there, else the next free port on it, else the
      next pool addresses in turn. Spreading copies over addresses keeps the original ports
      where it can (easier to follow in a capture) and the per-address port space unstrained.

    A released pair is in quarantine for ``reuse_delay`` seconds (default 60, Linux's TIME_WAIT),
    because the target may still hold the old connection (TIME_WAIT, or a close it has not
    seen) and answer a new SYN on it with an ACK for the old one instead of a SYN-ACK.
    Quarantined pairs come back in release order. The quarantine holds every pair released in
    the last ``reuse_delay`` seconds (about 100 bytes each).

    With a pool, copy 0 of a client outside the pool lands on the address a ``ClientMap`` fed
    the same clients would give it, so one allocator serves both ``-c`` style rewriting and
    amplification.

    ``allocate`` returns None and counts ``failed`` when no pair is free; ``allocated`` counts
    successes. Allocation and release are O(1) amortised: a cursor through never-used ports and a
    FIFO of recycled ones per client IP; scanning other pool addresses happens only when the
    preferred one is full.

    Raises ``ValueError`` for a bad ``port_range`` or ``reuse_delay``.
    """

    def __init__(
        self,
        pool_ips: Sequence[int] = (),
        port_range: tuple[int, int] = (1024, 65535),
        *,
        reuse_delay: float = 60.0,
    ) -> None:
        lo, hi = port_range
        if not 0 < lo <= hi <= 0xFFFF:
            raise ValueError(f"PortAllocator: bad port range {lo}-{hi}")
        if not 0 <= reuse_delay < float("inf"):
            raise ValueError(f"PortAllocator: bad reuse_delay {reuse_delay}")
        self.pool = tuple(dict.fromkeys(pool_ips))
        self.port_range = (lo, hi)
        self.reuse_delay = float(reuse_delay)
        self.allocated = 0
        self.failed = 0
        self._lo = lo
        self._hi = hi
        self._pool_set = frozenset(self.pool)
        self._homes = ClientMap(self.pool) if self.pool else None
        self._live: set[int] = set()
        self._quarantine: dict[int, float] = {}  # pair -> when it may be reused
        self._expiry: deque[tuple[float, int]] = deque()  # (when, pair), in release order
        self._ports: dict[int, _PortState] = {}
        self._now = float("-inf")

    # --- queries ---

    def in_use(self) -> int:
        """Number of live pairs (allocated, not yet released)."""
        return len(self._live)

    def quarantined(self) -> int:
        """Number of released pairs still waiting out ``reuse_delay`` (as of the last call)."""
        return len(self._quarantine)

    def __contains__(self, pair: object) -> bool:
        """True if ``pair`` is live."""
        if not isinstance(pair, tuple) or len(pair) != 2:
            return False
        ip, port = pair
        return (ip << 16 | port) in self._live

    # --- operations ---

    def allocate(
        self, original_ip: int, original_port: int, copy: int, now: float
    ) -> tuple[int, int] | None:
        """A free (client ip, client port) for copy ``copy`` (0 = the session itself) of the
        session from ``original_ip:original_port``, now live; None if none is free.

        Raises ``ValueError`` for an address, port or copy number out of range.
        """
        if not (0 <= original_ip <= 0xFFFFFFFF and 0 <= original_port <= 0xFFFF and copy >= 0):
            raise ValueError(
                f"PortAllocator.allocate: bad ip/port/copy {original_ip}/{original_port}/{copy}"
            )
        self._advance(now)
        live = self._live
        quarantine = self._quarantine
        pool = self.pool
        if copy == 0 and (not pool or original_ip in self._pool_set):
            pair = original_ip << 16 | original_port
            if pair not in live and pair not in quarantine:
                return self._take(pair)
        if not pool:
            pair = self._free_port(original_ip)
            if pair >= 0:
                return self._take(pair)
            self.failed += 1
            return None
        homes = self._homes
        assert homes is not None
        n = len(pool)
        first = (homes.index(original_ip) + copy) % n
        ip = pool[first]
        pair = ip << 16 | original_port
        if pair not in live and pair not in quarantine:
            return self._take(pair)
        # Past the preferred address only a full one is skipped, so this loop runs more than
        # once only when addresses fill up.
        for step in range(n):
            pair = self._free_port(pool[(first + step) % n])
            if pair >= 0:
                return self._take(pair)
        self.failed += 1
        return None

    def release(self, pair: tuple[int, int], now: float) -> None:
        """Return a live pair; it can be allocated again ``reuse_delay`` seconds after ``now``.

        Raises ``ValueError`` if ``pair`` is not live (released twice, or never allocated).
        """
        ip, port = pair
        key = ip << 16 | port
        try:
            self._live.remove(key)
        except KeyError:
            raise ValueError(f"PortAllocator.release: {pair} is not in use") from None
        self._advance(now)
        if self.reuse_delay > 0:
            when = self._now + self.reuse_delay
            self._quarantine[key] = when
            self._expiry.append((when, key))
        else:
            self._recycle(key)

    # --- internals ---

    def _take(self, pair: int) -> tuple[int, int]:
        self._live.add(pair)
        self.allocated += 1
        return pair >> 16, pair & 0xFFFF

    def _advance(self, now: float) -> None:
        """Move the clock to ``now`` (never back) and end the quarantines that are over."""
        if now > self._now:
            self._now = now
        now = self._now
        expiry = self._expiry
        quarantine = self._quarantine
        while expiry and expiry[0][0] <= now:
            _when, key = expiry.popleft()
            del quarantine[key]
            self._recycle(key)

    def _recycle(self, key: int) -> None:
        """Offer a free pair to its IP's FIFO, unless the cursor will find it anyway."""
        port = key & 0xFFFF
        state = self._ports.get(key >> 16)
        if state is None or not self._lo <= port < state.fresh or port in state.queued:
            return
        state.queued.add(port)
        state.recycled.append(port)

    def _free_port(self, ip: int) -> int:
        """A free pair on ``ip`` from the cursor or the FIFO (not yet live), or -1 if ``ip`` has
        none. Entries that went live meanwhile (as someone's original port) are dropped on the
        way; each is dropped once per release, hence amortised O(1)."""
        state = self._ports.get(ip)
        if state is None:
            state = self._ports[ip] = _PortState(self._lo)
        live = self._live
        quarantine = self._quarantine
        base = ip << 16
        port = state.fresh
        hi = self._hi
        while port <= hi:
            pair = base | port
            port += 1
            if pair not in live and pair not in quarantine:
                state.fresh = port
                return pair
        state.fresh = port
        recycled = state.recycled
        while recycled:
            port = recycled.popleft()
            state.queued.discard(port)
            pair = base | port
            if pair not in live and pair not in quarantine:
                return pair
        return -1
