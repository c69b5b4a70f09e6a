"""Packet fixtures for the proto tests: random IPv4/TCP packets and scapy's view of checksums."""

import random

from scapy.layers.inet import IP, in4_chksum
from scapy.utils import checksum as scapy_checksum

from nfreplay.proto.checksum import fill_checksums
from nfreplay.proto.tcpip import ACK, PSH, build

# A few well-formed TCP option layouts, as real stacks send them.
TS_DATA = bytes([1, 1, 8, 10]) + bytes(8)
OPTION_LAYOUTS = [
    b"",
    TS_DATA,
    bytes.fromhex("020405b4") + bytes.fromhex("0402080a") + bytes(8) + bytes.fromhex("01030307"),
    bytes.fromhex("020405b4"),
    bytes.fromhex("0101050a") + bytes(8) + TS_DATA,  # SACK block then timestamps
    bytes.fromhex("01080a") + bytes(8),  # TS at an odd offset (kind at TCP offset 21)
]


def scapy_checksums(pkt: bytes | bytearray, off: int = 0) -> tuple[int, int]:
    """(IP header checksum, TCP checksum) as scapy computes them for the packet at ``off``,
    whatever the stored fields hold."""
    p = bytes(pkt[off:])
    ihl = (p[0] & 0x0F) * 4
    tot_len = int.from_bytes(p[2:4], "big")
    hdr = bytearray(p[:ihl])
    hdr[10:12] = b"\0\0"
    tcp = bytearray(p[ihl:tot_len])
    tcp[16:18] = b"\0\0"
    return scapy_checksum(bytes(hdr)), in4_chksum(6, IP(p[:tot_len]), bytes(tcp))


def stored_checksums(pkt: bytes | bytearray, off: int = 0) -> tuple[int, int]:
    ihl = (pkt[off] & 0x0F) * 4
    return (
        int.from_bytes(pkt[off + 10 : off + 12], "big"),
        int.from_bytes(pkt[off + ihl + 16 : off + ihl + 18], "big"),
    )


def add_ip_options(pkt: bytearray, nbytes: int) -> bytearray:
    """The same packet with ``nbytes`` (a multiple of 4) of IPv4 NOP options, checksums fixed."""
    assert nbytes % 4 == 0 and 0 < nbytes <= 40
    out = bytearray(pkt[:20]) + bytearray([1] * (nbytes - 1) + [0]) + pkt[20:]
    out[0] = 0x40 | (20 + nbytes) // 4
    out[2:4] = (len(out)).to_bytes(2, "big")
    fill_checksums(out)
    return out


def random_packet(
    rng: random.Random, *, payload_len: int | None = None, ip_options: int = 0
) -> bytearray:
    """A valid IPv4/TCP packet with random addresses, ports, numbers, options and payload."""
    if payload_len is None:
        payload_len = rng.choice([0, 1, 7, rng.randrange(1, 1461)])
    pkt = build(
        rng.randrange(2**32),
        rng.randrange(2**32),
        rng.randrange(65536),
        rng.randrange(65536),
        rng.randrange(2**32),
        rng.randrange(2**32),
        ACK | (PSH if payload_len else 0),
        window=rng.randrange(65536),
        options=rng.choice(OPTION_LAYOUTS),
        payload=rng.randbytes(payload_len),
        ip_id=rng.randrange(65536),
        ttl=rng.randrange(1, 256),
    )
    return add_ip_options(pkt, ip_options) if ip_options else pkt
