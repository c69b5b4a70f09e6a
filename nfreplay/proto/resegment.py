"""Cutting an oversized captured TCP segment into pieces that fit the path's MTU.

Captures taken with GRO/LRO (or of locally generated TSO traffic) hold IP packets far above
the MTU; a raw socket refuses to send them (EMSGSIZE) and the target would never see that
data. Each piece keeps the original IP and TCP headers (options included), gets its share of
the payload and its own sequence number; IP ids count up; FIN and PSH stay on the last piece
only. Checksums are recomputed in full (a few times per oversized capture, never per packet).
"""

from __future__ import annotations

from struct import Struct

from nfreplay.proto.checksum import fill_checksums
from nfreplay.proto.seq import seq_add
from nfreplay.proto.tcpip import FIN, PSH, Segment

_U16 = Struct("!H")
_U32 = Struct("!I")


def split(pkt: bytes | bytearray, seg: Segment, mtu: int) -> list[bytearray]:
    """`pkt` (parsed as `seg`, IP header at `seg.off`) as IP packets of at most `mtu` bytes;
    the packet itself (copied) when it already fits. ValueError if not even the headers fit."""
    off, hdr = seg.off, seg.ihl + seg.doff
    if seg.tot_len <= mtu:
        return [bytearray(pkt[off:off + seg.tot_len])]
    room = mtu - hdr
    if room <= 0:
        raise ValueError(f"mtu {mtu} cannot carry {hdr} bytes of headers")
    headers = bytes(pkt[off:off + hdr])
    payload = memoryview(pkt)[seg.payload_off:seg.payload_off + seg.payload_len]
    flags_at = seg.ihl + 13
    pieces: list[bytearray] = []
    for start in range(0, seg.payload_len, room):
        chunk = payload[start:start + room]
        piece = bytearray(headers)
        piece += chunk
        _U16.pack_into(piece, 2, hdr + len(chunk))
        _U16.pack_into(piece, 4, (seg.ip_id + len(pieces)) & 0xFFFF)
        _U32.pack_into(piece, seg.ihl + 4, seq_add(seg.seq, start))
        if start + room < seg.payload_len:
            piece[flags_at] &= ~(FIN | PSH) & 0xFF
        fill_checksums(piece)
        pieces.append(piece)
    return pieces
