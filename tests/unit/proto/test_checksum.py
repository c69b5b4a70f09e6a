"""Internet checksum: known vectors, scapy as the independent reference, incremental updates."""

import random
from collections.abc import Callable

import pytest
from scapy.layers.inet import IP, TCP
from scapy.packet import Raw

from nfreplay.proto.checksum import (
    adjust, checksum, fill_checksums, odd_delta, tcp_checksum, verify,
)  # fmt: skip
from nfreplay.proto.tcpip import ACK, SYN, build, ip2int

from .packets import random_packet, scapy_checksums, stored_checksums

# The SYN-ACK of reference §1.9 (its checksums 0x0cfc / 0x65a1 are part of the vector).
SYNACK = bytes.fromhex(
    "4500003c000040004006 0cfc 3d87e9a0 3e87c811"
    "1f909c40 1a2b3c4d 00bc614f a012 7120 65a1 0000"
    "020405b4 0402080a 0004a3f1 00882a9c 01030307".replace(" ", "")
)


def test_rfc1071_example() -> None:
    # RFC 1071 §3: the words 0001 f203 f4f5 f6f7 sum to 0xddf2; the checksum is its complement.
    assert checksum(bytes.fromhex("0001f203f4f5f6f7")) == 0x220D


def test_odd_length_is_padded_with_a_zero_byte() -> None:
    assert checksum(b"\x01") == 0xFEFF
    assert checksum(bytes.fromhex("0001f203f4f5f6")) == checksum(bytes.fromhex("0001f203f4f5f600"))


def test_all_zero_data_gives_0xffff() -> None:
    # +0 sum → checksum 0xFFFF; 0x0000 would fail a receiver's end-around-carry check.
    assert checksum(bytes(20)) == 0xFFFF


def test_initial_is_folded_in() -> None:
    data = bytes.fromhex("45000054")
    assert checksum(data, initial=0x1234) == checksum(data + bytes.fromhex("1234"))


def test_ip_header_vector_of_reference() -> None:
    hdr = bytearray(SYNACK[:20])
    hdr[10:12] = b"\0\0"
    assert checksum(hdr) == 0x0CFC


def test_tcp_checksum_vector_of_reference_ignores_stored_field() -> None:
    src, dst = ip2int("61.135.233.160"), ip2int("62.135.200.17")
    assert tcp_checksum(src, dst, SYNACK[20:]) == 0x65A1
    garbled = bytearray(SYNACK[20:])
    garbled[16:18] = b"\xab\xcd"
    assert tcp_checksum(src, dst, garbled) == 0x65A1


def test_tcp_checksum_rejects_short_segment() -> None:
    with pytest.raises(ValueError):
        tcp_checksum(1, 2, bytes(19))


def _scapy_packets() -> list[bytes]:
    rng = random.Random(7)
    out = []
    for i in range(200):
        payload = rng.randbytes(rng.choice([0, 1, 2, 3, 99, 1448, 1449]))
        ip = IP(src=f"10.{i % 250}.{rng.randrange(256)}.1", dst="198.19.3.7", id=i)
        if i % 5 == 0:
            ip.options = [b"\x01\x01\x01\x00"]  # 4 bytes of IP options: ihl 6
        tcp = TCP(
            sport=rng.randrange(65536),
            dport=80,
            seq=rng.randrange(2**32),
            ack=rng.randrange(2**32),
            flags="PA",
            window=rng.randrange(65536),
            options=rng.choice([[], [("NOP", None), ("NOP", None), ("Timestamp", (i, 5))]]),
        )
        out.append(bytes(ip / tcp / Raw(payload)))
    return out


def test_fill_checksums_matches_scapy_built_packets() -> None:
    for pkt in _scapy_packets():
        work = bytearray(pkt)
        ihl = (work[0] & 0x0F) * 4
        work[10:12] = b"\x12\x34"  # garbage in both fields: the recompute must not depend on it
        work[ihl + 16 : ihl + 18] = b"\x56\x78"
        fill_checksums(work)
        assert work == pkt  # scapy filled in its own checksums when it built pkt
        assert verify(work)


def test_fill_checksums_at_offset_leaves_prefix_and_padding_alone() -> None:
    pkt = _scapy_packets()[3]
    frame = bytearray(b"E" * 14) + bytearray(pkt) + b"\xee" * 6  # link header + frame padding
    frame[14 + 10 : 14 + 12] = b"\0\0"
    fill_checksums(frame, 14)
    assert frame == b"E" * 14 + pkt + b"\xee" * 6
    assert verify(frame, 14)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda p: p[:39], "shorter than"),
        (lambda p: p[:9] + b"\x11" + p[10:], "not an IPv4/TCP"),  # UDP
        (lambda p: b"\x65" + p[1:], "not an IPv4/TCP"),  # version 6
        (lambda p: p[:-1], "does not fit"),  # tot_len beyond the buffer
    ],
)
def test_fill_checksums_rejects_misuse(mutate: Callable[[bytes], bytes], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        fill_checksums(bytearray(mutate(SYNACK)))


def test_verify_detects_corruption() -> None:
    assert verify(SYNACK)
    for pos in (1, 12, 19, 20, 30, 45, 59):  # IP header, TCP header and options
        bad = bytearray(SYNACK)
        bad[pos] ^= 0x40
        assert not verify(bad), pos
    assert not verify(SYNACK[:50])  # truncated
    assert not verify(SYNACK[:9] + b"\x11" + SYNACK[10:])  # not TCP


def test_verify_detects_payload_corruption_at_odd_length() -> None:
    pkt = build(1, 2, 3, 4, 5, 6, ACK, payload=b"abcde")
    assert verify(pkt)
    pkt[-1] ^= 1
    assert not verify(pkt)


def test_rfc1624_example_gives_0x0000_like_a_recompute() -> None:
    # RFC 1624 §3: HC = 0xDD2F, field 0x5555 -> 0x3285. Recompute gives 0x0000; RFC 1141's
    # formula gave 0xFFFF.
    assert adjust(0xDD2F, 0x3285 - 0x5555) == 0x0000


def _packet_with_tcp_checksum_zero() -> bytearray:
    # Choose the first payload word so that the TCP sum is ≡ 0: with a zero word the checksum is
    # c = -S mod 0xFFFF, so putting c there makes the new sum S + c ≡ 0.
    pkt = build(ip2int("10.0.0.1"), ip2int("10.0.0.2"), 1000, 80, 1, 2, ACK, payload=b"\0\0xyz!")
    c = int.from_bytes(pkt[36:38], "big")
    pkt[40:42] = c.to_bytes(2, "big")
    fill_checksums(pkt)
    return pkt


def test_canonical_zero_checksum_agrees_with_scapy() -> None:
    pkt = _packet_with_tcp_checksum_zero()
    assert stored_checksums(pkt)[1] == 0x0000
    assert scapy_checksums(pkt) == stored_checksums(pkt)
    assert verify(pkt)
    pkt[36:38] = b"\xff\xff"  # the other one's-complement zero, as another stack may send it
    assert verify(pkt)


def test_adjust_matches_full_recompute_for_random_field_changes() -> None:
    rng = random.Random(1624)
    for _ in range(1000):
        pkt = random_packet(rng, payload_len=rng.randrange(0, 40))
        tcp_csum = int.from_bytes(pkt[36:38], "big")
        old_seq = int.from_bytes(pkt[24:28], "big")
        old_win = int.from_bytes(pkt[34:36], "big")
        new_seq, new_win = rng.randrange(2**32), rng.randrange(65536)
        pkt[24:28] = new_seq.to_bytes(4, "big")
        pkt[34:36] = new_win.to_bytes(2, "big")
        updated = adjust(tcp_csum, (new_seq - old_seq) + (new_win - old_win))
        fill_checksums(pkt)
        assert updated == int.from_bytes(pkt[36:38], "big")


def test_odd_delta_for_a_field_at_an_odd_offset() -> None:
    rng = random.Random(3)
    for _ in range(300):
        data = bytearray(rng.randbytes(rng.randrange(12, 40)))
        pos = rng.randrange(0, len(data) - 4) | 1  # a 4-byte field starting at an odd offset
        before = checksum(data)
        old = int.from_bytes(data[pos : pos + 4], "big")
        new = rng.randrange(2**32)
        data[pos : pos + 4] = new.to_bytes(4, "big")
        after = checksum(data)
        assert adjust(before, odd_delta(new - old)) % 0xFFFF == after % 0xFFFF
        # Not scaling the difference would be wrong (whenever the field really changed).
        if (new - old) % 0xFFFF and (new - old) * 255 % 0xFFFF:
            assert adjust(before, new - old) % 0xFFFF != after % 0xFFFF


def test_build_of_syn_matches_scapy_checksums() -> None:
    mss = b"\x02\x04\x05\xb4"
    pkt = build(ip2int("192.0.2.1"), ip2int("192.0.2.2"), 5555, 443, 77, 0, SYN, options=mss)
    parsed = IP(bytes(pkt))
    assert parsed[TCP].options == [("MSS", 1460)]
    assert scapy_checksums(pkt) == (parsed.chksum, parsed[TCP].chksum)
