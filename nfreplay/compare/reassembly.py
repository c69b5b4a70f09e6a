"""TCP byte streams from captured packets: connections split at SYNs, each direction
reassembled with sequence arithmetic modulo 2**32.

Invariants:

* Bytes are never guessed. Retransmitted and overlapping bytes are kept once (the first
  packet that carried them wins; a later copy with other bytes is counted in ``conflicts``);
  packets out of order are put in order; a byte range no packet carried is a gap, reported as
  ``(start, end)`` offsets in ``Assembled.gaps`` and never filled. ``Assembled.data`` is the
  contiguous prefix: it stops at the first gap.
* Offsets count payload bytes from the first byte after the SYN (or, without a SYN in the
  capture, from the lowest sequence number seen). Sequence numbers are unwrapped against the
  previous packet, so a stream may cross 2**32 and be longer than 4 GiB.
* Each byte range keeps the capture time and the ACK number of the packet that first carried
  it: the latency of a response is measured from these.
* A 4-tuple may be reused: a SYN with another initial sequence number starts a new
  connection (and a SYN-ACK with another one, when only the server's direction is captured).
* Bad packets (not TCP, bad headers) are counted, never raised.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from dataclasses import dataclass, field

from nfreplay.errors import WireError
from nfreplay.proto.seq import seq_add, seq_diff
from nfreplay.proto.tcpip import ACK, FIN, RST, SYN, int2ip, parse

__all__ = ["Assembled", "Capture", "Connection", "Stream", "connections"]

Endpoint = tuple[str, int]

# A SYN that arrives after data it precedes (reordering) is the same connection when the data
# starts no further than this after it.
_LATE_SYN_WINDOW = 1 << 20


@dataclass(frozen=True, slots=True)
class Assembled:
    """One direction of one connection, reassembled.

    ``data``: the bytes from offset 0 up to the first gap. ``gaps``: every missing range
    ``(start, end)`` (a range missing before a FIN included; bytes missing at the end of a
    stream without FIN cannot be known). ``end``: one past the highest byte seen.
    ``base_seq``: the sequence number of offset 0 (to read the other direction's ACKs).
    ``starts``/``times``/``acks``: per range of bytes (sorted by offset), where it starts, when
    the first packet carrying it was captured, and that packet's ACK number (None without ACK).
    """

    data: bytes
    gaps: tuple[tuple[int, int], ...]
    end: int
    base_seq: int
    syn: bool
    fin: bool
    rst: bool
    starts: tuple[int, ...]
    times: tuple[float, ...]
    acks: tuple[int | None, ...]
    duplicates: int  # bytes received more than once
    conflicts: (
        int  # bytes received again with different contents (the first copy is kept)
    )

    def time_at(self, offset: int) -> float | None:
        """When the byte at ``offset`` was first captured (None if it never was)."""
        i = bisect.bisect_right(self.starts, offset) - 1
        return self.times[i] if i >= 0 else None

    def ack_at(self, offset: int) -> int | None:
        """The ACK number of the packet that first carried the byte at ``offset``."""
        i = bisect.bisect_right(self.starts, offset) - 1
        return self.acks[i] if i >= 0 else None

    @property
    def missing(self) -> int:
        """Bytes in gaps."""
        return sum(e - s for s, e in self.gaps)


@dataclass(slots=True)
class _Piece:
    start: int
    end: int
    data: bytes
    ts: float
    ack: int | None


class Stream:
    """The packets of one direction of one connection, as they arrive. Feed ``add``, then
    call ``assemble``."""

    def __init__(self) -> None:
        self.isn: int | None = None
        self.syn_ts: float | None = None
        self.syn_ack: int | None = (
            None  # the ACK number of a SYN-ACK: the peer's ISN + 1
        )
        self._ref_seq: int | None = (
            None  # unwrapping reference: a seen sequence number ...
        )
        self._ref_off = 0  # ... and its unwrapped offset from the first one seen
        self._syn_off: int | None = None
        self._fin_off: int | None = None
        self._rst = False
        self._segments: list[tuple[int, bytes, float, int | None]] = []
        self.packets = 0

    def _unwrap(self, seq: int) -> int:
        if self._ref_seq is None:
            self._ref_seq = seq
            return 0
        off = self._ref_off + seq_diff(seq, self._ref_seq)
        if off > self._ref_off:
            self._ref_seq, self._ref_off = seq, off
        return off

    def has_data(self) -> bool:
        return bool(self._segments)

    def starts_new(self, syn_seq: int) -> bool:
        """Whether a SYN with ``syn_seq`` belongs to a new connection rather than this one."""
        if self.isn is not None:
            return syn_seq != self.isn
        if not self._segments or self._ref_seq is None:
            return False
        first = min(off for off, _, _, _ in self._segments)
        dist = first - (self._ref_off + seq_diff(seq_add(syn_seq, 1), self._ref_seq))
        return not 0 <= dist < _LATE_SYN_WINDOW

    def add(
        self, seq: int, flags: int, payload: bytes, ts: float, ack: int | None
    ) -> None:
        """One packet of this direction: its sequence number, TCP flags, payload, capture time
        and ACK number (None if the ACK flag is off)."""
        self.packets += 1
        off = self._unwrap(seq)
        if flags & SYN:
            if self.isn is None:
                self.isn, self.syn_ts, self._syn_off = seq, ts, off
                self.syn_ack = ack
            off += 1
        if payload:
            self._segments.append((off, payload, ts, ack))
        if flags & FIN:
            fin = off + len(payload)
            if self._fin_off is None or fin < self._fin_off:
                self._fin_off = fin
        if flags & RST:
            self._rst = True

    def assemble(self) -> Assembled:
        """The reassembled stream (see ``Assembled``)."""
        if self._syn_off is not None:
            base = self._syn_off + 1
        elif self._segments:
            base = min(off for off, _, _, _ in self._segments)
        else:
            base = self._fin_off if self._fin_off is not None else 0
        base_seq = seq_add(self._ref_seq or 0, base - self._ref_off)
        pieces: list[_Piece] = []
        starts: list[int] = []
        duplicates = conflicts = 0
        for off, payload, ts, ack in self._segments:
            s, e = off - base, off - base + len(payload)
            if e <= 0:
                duplicates += len(payload)
                continue
            if s < 0:  # bytes before the SYN: not this stream's
                payload, s = payload[-s:], 0
            new: list[_Piece] = []
            cur = s
            k = bisect.bisect_right(starts, s) - 1
            if k < 0 or pieces[k].end <= s:
                k += 1
            while k < len(pieces) and pieces[k].start < e:
                p = pieces[k]
                if cur < p.start:
                    new.append(
                        _Piece(cur, p.start, payload[cur - s : p.start - s], ts, ack)
                    )
                lo, hi = max(cur, p.start), min(e, p.end)
                if hi > lo:
                    duplicates += hi - lo
                    if payload[lo - s : hi - s] != p.data[lo - p.start : hi - p.start]:
                        conflicts += hi - lo
                cur = max(cur, p.end)
                k += 1
            if cur < e:
                new.append(_Piece(cur, e, payload[cur - s :], ts, ack))
            for p in new:
                i = bisect.bisect_left(starts, p.start)
                starts.insert(i, p.start)
                pieces.insert(i, p)
        gaps: list[tuple[int, int]] = []
        expected = 0
        prefix: list[bytes] = []
        for p in pieces:
            if p.start > expected:
                gaps.append((expected, p.start))
            elif not gaps:
                prefix.append(p.data)
            expected = p.end
        fin = self._fin_off is not None
        if self._fin_off is not None and self._fin_off - base > expected:
            gaps.append((expected, self._fin_off - base))
        return Assembled(
            data=b"".join(prefix),
            gaps=tuple(gaps),
            end=expected,
            base_seq=base_seq,
            syn=self.isn is not None,
            fin=fin,
            rst=self._rst,
            starts=tuple(p.start for p in pieces),
            times=tuple(p.ts for p in pieces),
            acks=tuple(p.ack for p in pieces),
            duplicates=duplicates,
            conflicts=conflicts,
        )


@dataclass(slots=True)
class Connection:
    """One TCP connection: ``client`` -> ``server`` bytes in ``to_server``, the others in
    ``to_client``. ``first_ts`` is the capture time of its first packet; ``syn_ts`` that of
    the client's first SYN (or, when only the server's direction is captured, of the SYN-ACK)."""

    client: Endpoint
    server: Endpoint
    first_ts: float
    to_server: Stream = field(default_factory=Stream)
    to_client: Stream = field(default_factory=Stream)

    @property
    def syn_ts(self) -> float | None:
        return (
            self.to_server.syn_ts
            if self.to_server.syn_ts is not None
            else self.to_client.syn_ts
        )

    @property
    def start_ts(self) -> float:
        """The SYN's time if there is one, else the first packet's."""
        syn = self.syn_ts
        return syn if syn is not None else self.first_ts


def _new_syn_ack(conn: Connection, seq: int, ack: int | None) -> bool:
    """Whether a SYN-ACK starts a connection after ``conn`` on the same 4-tuple: it does not
    answer ``conn``'s SYN (or, with only the server's side captured, the SYN the previous
    SYN-ACK answered), or it has another initial sequence number."""
    isn = conn.to_server.isn
    if isn is not None:
        return ack != seq_add(isn, 1) and conn.to_client.starts_new(seq)
    answered = conn.to_client.syn_ack
    if answered is not None and ack is not None:
        return ack != answered
    return conn.to_client.starts_new(seq)


@dataclass(slots=True)
class Capture:
    """The connections of a capture, in order of their first packet, and what could not be
    used."""

    connections: list[Connection] = field(default_factory=list)
    packets: int = 0
    bad_packets: int = 0  # not IPv4/TCP, or headers that do not parse


def connections(
    frames: Iterable[tuple[float, bytes]], servers: set[Endpoint] | frozenset[Endpoint]
) -> Capture:
    """Split captured IPv4 packets (``(ts, ip)`` pairs, e.g. ``Frame``) into connections.

    ``servers`` names the service ends (ip, port): a packet to one of them is the client's,
    from one of them the server's. For other packets, a SYN without ACK comes from the
    client; otherwise the lower port is taken for the server's.
    """
    out = Capture()
    current: dict[tuple[Endpoint, Endpoint], Connection] = {}
    for ts, ip in frames:
        out.packets += 1
        try:
            seg = parse(ip)
        except WireError:
            out.bad_packets += 1
            continue
        src = (int2ip(seg.src), seg.sport)
        dst = (int2ip(seg.dst), seg.dport)
        flags = seg.flags
        if dst in servers:
            from_client = True
        elif src in servers:
            from_client = False
        elif flags & (SYN | ACK) == SYN:
            from_client = True
        else:
            from_client = seg.dport < seg.sport
        key = (src, dst) if from_client else (dst, src)
        end = min(len(ip), seg.off + seg.tot_len)
        payload = bytes(ip[seg.payload_off : end]) if end > seg.payload_off else b""
        ack = seg.ack if flags & ACK else None
        conn = current.get(key)
        if flags & SYN:
            if from_client and not flags & ACK:
                new = conn is None or conn.to_server.starts_new(seg.seq)
            elif not from_client:
                new = conn is None or _new_syn_ack(conn, seg.seq, ack)
            else:
                new = conn is None
            if new:
                conn = None
        if conn is None:
            conn = Connection(client=key[0], server=key[1], first_ts=ts)
            current[key] = conn
            out.connections.append(conn)
        (conn.to_server if from_client else conn.to_client).add(
            seg.seq, flags, payload, ts, ack
        )
    return out
