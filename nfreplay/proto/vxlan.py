"""A traffic mirror's datagrams (VXLAN, RFC 7348): which of them are client packets to replay.

A cloud traffic mirror (AWS Traffic Mirroring, Azure vTAP) or a kernel `tc ... mirred` into a
`vxlan` device sends a copy of every frame of the mirrored interface, both directions, as a
UDP datagram to the collector: an 8-byte VXLAN header (flags, with the I bit; a 24-bit VNI),
then the whole Ethernet frame. `MirrorFilter.inner` decides per datagram, with no copy, what
a live capture's BPF filter would have decided (`cli.online.bpf`): a TCP packet to one of the
services, not to a target, is kept (the offset of its IPv4 header is returned); everything
else gets a negative verdict, which the adapter counts under its name.

Invariants:
  * Pure: no I/O, no clock; the inner Ethernet and VLAN headers go through the one link
    decoder (`proto.link`), so a frame a capture can replay is one the mirror can too.
  * A kept packet is whole: its IPv4 and TCP headers are consistent with each other and with
    the bytes received (`tot_len` within the datagram; Ethernet padding may follow). Anything
    cut short (a mirror that truncates large packets) is BAD, never half replayed.
  * Exact duplicates (a mirror that copies a packet twice: both ends of a link mirrored, two
    sessions, a retried delivery) are recognised within the last `window` kept packets and
    never kept twice. The key is what two copies of one packet share and a client's own
    retransmission does not (the IP id, with the TCP checksum that covers its timestamps):
    IP total length and id, addresses, and the TCP header's first 18 bytes (ports, seq,
    ack, offset, flags, window, checksum); not the TTL or the IP checksum, which a router
    between two mirror points changes.
"""

from __future__ import annotations

from collections.abc import Iterable
from struct import Struct, error as StructError

from nfreplay.proto.link import LINKTYPE_ETHERNET, NOT_IPV4, Strip, stripper

__all__ = ["VXLAN_PORT", "HEADER_LEN", "VNI_MAX", "DEDUP_WINDOW", "BAD", "OTHER_VNI", "REPLY",
           "OTHER", "DUPLICATE", "VERDICTS", "header", "MirrorFilter"]

VXLAN_PORT = 4789  # IANA's VXLAN port; AWS and Azure mirrors send to it
HEADER_LEN = 8
VNI_MAX = (1 << 24) - 1
DEDUP_WINDOW = 32768  # kept packets remembered for duplicates (~0.3-1 s at 30-100 k packets/s)

# Verdicts of MirrorFilter.inner (>= 0: the IPv4 header's offset in the datagram).
BAD = -1  # undecodable: not VXLAN, cut short, inconsistent headers
OTHER_VNI = -2  # a VXLAN network other than the one configured
REPLY = -3  # production's answer (from a service port): not replayed
OTHER = -4  # not for the replay: other ports, not TCP, not IPv4 (ARP, IPv6), to a target
DUPLICATE = -5  # the same packet again, within the window

VERDICTS = {BAD: "bad", OTHER_VNI: "other_vni", REPLY: "reply", OTHER: "other",
            DUPLICATE: "duplicate"}

# VXLAN flags, VNI word, (MACs), ethertype; IPv4 vihl, tot_len, id, frag, proto, src, dst;
# TCP sport, dport, seq, ack, data offset byte, flags, window, checksum: a datagram of an
# untagged frame whose IPv4 header has no options, up to the TCP checksum, in one unpack.
_FAST = Struct("!B3xI12xHBxHHHxBxxIIHHIIBBHH").unpack_from
_FAST_IP = HEADER_LEN + 14  # where that IPv4 header starts
_IP = Struct("!BxHHHxBxxII").unpack_from  # vihl, tot_len, id, frag, proto, src, dst
_TCP18 = Struct("!HHIIBBHH").unpack_from  # the TCP header up to its checksum
_strip = stripper(LINKTYPE_ETHERNET)
assert _strip is not None
_ETHERNET: Strip = _strip
_NO_SLOT = -1  # an empty slot of the duplicate window (hash() never returns -1)


def header(buf: bytes) -> int:
    """The VNI of a VXLAN datagram, or BAD if it is too short or its I flag is clear (other
    flag bits and the reserved fields are ignored, as RFC 7348 and its extensions ask)."""
    if len(buf) < HEADER_LEN or not buf[0] & 0x08:
        return BAD
    return buf[4] << 16 | buf[5] << 8 | buf[6]


class MirrorFilter:
    """What a live capture would keep of mirrored traffic (see the module's docstring).

    `services`: (service IPv4 as an int or None for any local address, port); `targets`:
    (IPv4 int, port) never kept (what nfreplay itself sends, should the mirror see it);
    `vni`: the only VXLAN network kept (None: any); `window`: duplicates are looked for
    among this many kept packets (0: no look)."""

    def __init__(self, services: Iterable[tuple[int | None, int]],
                 targets: Iterable[tuple[int, int]] = (), vni: int | None = None,
                 window: int = DEDUP_WINDOW) -> None:
        # port -> service addresses; an empty set: any address.
        self._ports: dict[int, set[int]] = {}
        anywhere: set[int] = set()
        for ip, port in services:
            addrs = self._ports.setdefault(port, set())
            if ip is None:
                anywhere.add(port)
            else:
                addrs.add(ip)
        for port in anywhere:
            self._ports[port] = set()
        self._targets = {(ip << 16) | port for ip, port in targets}
        self.vni = -1 if vni is None else vni
        self.window = window
        self._ring = [_NO_SLOT] * window
        self._next = 0
        self._seen: set[int] = set()

    def inner(self, buf: bytes) -> int:
        """The verdict on one datagram: the offset of the client packet's IPv4 header in
        `buf` if a capture would keep it, else BAD, OTHER_VNI, REPLY, OTHER or DUPLICATE."""
        # The usual datagram (untagged Ethernet, IPv4 without options) in one unpack; any
        # other (or one too short for it) takes the general way, with the same verdicts.
        try:
            (flags, vni, etype, vihl, tot_len, ip_id, frag, proto, src, dst, sport, dport, seq,
             ack, doff, tflags, window, csum) = _FAST(buf, 0)
        except StructError:
            return self._inner(buf)
        if etype != 0x0800 or vihl != 0x45:
            return self._inner(buf)
        if not flags & 0x08:
            return BAD
        if self.vni >= 0 and vni >> 8 != self.vni:
            return OTHER_VNI
        if tot_len < 20 or _FAST_IP + tot_len > len(buf):
            return BAD
        if proto != 6 or frag & 0x3FFF:
            return OTHER
        if tot_len < 40 or doff < 0x50 or 20 + ((doff >> 4) << 2) > tot_len:
            return BAD
        return self._choose(src, dst, sport, dport, (tot_len, ip_id, src, dst, sport, dport,
                                                     seq, ack, doff, tflags, window, csum),
                            _FAST_IP)

    def _inner(self, buf: bytes) -> int:
        """`inner` for any datagram: VLAN tags, IPv4 options, and every way to be bad."""
        end = len(buf)
        if end < HEADER_LEN or not buf[0] & 0x08:
            return BAD
        if self.vni >= 0 and (buf[4] << 16 | buf[5] << 8 | buf[6]) != self.vni:
            return OTHER_VNI
        ip = _ETHERNET(buf, HEADER_LEN, end)
        if ip < 0:
            return OTHER if ip == NOT_IPV4 else BAD
        if ip + 20 > end:
            return BAD
        vihl, tot_len, ip_id, frag, proto, src, dst = _IP(buf, ip)
        ihl = (vihl & 0x0F) << 2
        if vihl >> 4 != 4 or ihl < 20 or tot_len < ihl or ip + tot_len > end:
            return BAD
        if proto != 6 or frag & 0x3FFF:
            return OTHER  # not TCP, or a fragment (a capture's "tcp dst port" skips those)
        if tot_len < ihl + 20:
            return BAD
        sport, dport, seq, ack, doff, tflags, window, csum = _TCP18(buf, ip + ihl)
        if doff < 0x50 or ihl + ((doff >> 4) << 2) > tot_len:
            return BAD
        return self._choose(src, dst, sport, dport, (tot_len, ip_id, src, dst, sport, dport,
                                                     seq, ack, doff, tflags, window, csum), ip)

    def _choose(self, src: int, dst: int, sport: int, dport: int,
                key: tuple[int, ...], ip: int) -> int:
        """A whole TCP packet: to a service (`ip`, unless it is a copy), from one (REPLY),
        or neither (OTHER). `key`: what two copies of one packet share (module docstring)."""
        addrs = self._ports.get(dport)
        if addrs is None or (addrs and dst not in addrs):
            addrs = self._ports.get(sport)
            if addrs is not None and (not addrs or src in addrs):
                return REPLY
            return OTHER
        if self._targets and ((dst << 16) | dport) in self._targets:
            return OTHER
        if self.window:
            h = hash(key)
            seen = self._seen
            if h in seen:
                return DUPLICATE
            ring = self._ring
            i = self._next
            old = ring[i]
            if old != _NO_SLOT:
                seen.discard(old)
            ring[i] = h
            seen.add(h)
            i += 1
            self._next = 0 if i == self.window else i
        return ip
