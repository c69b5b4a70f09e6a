"""Oversized (GRO) captures cut to the MTU: contiguous sequence numbers, FIN/PSH on the last
piece only, options kept, checksums valid, payload reassembles exactly."""

import pytest

from nfreplay.proto import checksum, tcpip
from nfreplay.proto.resegment import split
from nfreplay.proto.tcpip import ACK, FIN, PSH, ip2int

TS = b"\x01\x01\x08\x0a" + bytes(range(8))


def big(plen: int, flags: int = ACK | PSH | FIN) -> bytearray:
    payload = bytes(i % 251 for i in range(plen))
    return tcpip.build(ip2int("198.18.1.10"), ip2int("198.18.0.3"), 40000, 80, 2**32 - 1000,
                       7, flags, options=TS, payload=payload, ip_id=65534)


def test_split_4000_bytes_to_1500() -> None:
    pkt = big(4000)
    seg = tcpip.parse(pkt)
    pieces = split(pkt, seg, 1500)
    views = [tcpip.parse(p) for p in pieces]
    assert all(len(p) <= 1500 and checksum.verify(p) for p in pieces)
    assert [v.payload_len for v in views] == [1448, 1448, 1104]
    assert [v.seq for v in views] == [2**32 - 1000, (2**32 - 1000 + 1448) % 2**32,
                                      (2**32 - 1000 + 2896) % 2**32]
    assert [v.flags for v in views] == [ACK, ACK, ACK | PSH | FIN]
    assert [v.ip_id for v in views] == [65534, 65535, 0]
    assert all(tcpip.timestamps(v) == tcpip.timestamps(seg) for v in views)
    assert b"".join(bytes(p[52:]) for p in pieces) == bytes(pkt[52:])


def test_small_packet_is_returned_as_a_copy() -> None:
    pkt = big(100)
    (piece,) = split(pkt, tcpip.parse(pkt), 1500)
    assert piece == pkt and piece is not pkt


def test_mtu_below_headers_is_refused() -> None:
    pkt = big(100)
    with pytest.raises(ValueError):
        split(pkt, tcpip.parse(pkt), 40)
