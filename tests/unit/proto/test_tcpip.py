"""IPv4/TCP views, options, build, rewrite (the hot path), timestamp rewrites and trim_front."""

import random

import pytest
from scapy.layers.inet import IP, TCP

from nfreplay.errors import WireError
from nfreplay.proto.checksum import fill_checksums, verify
from nfreplay.proto.tcpip import (
    ACK, CWR, ECE, FIN, IPPROTO_TCP, OPT_MSS, OPT_SACK_PERM, OPT_TOA, OPT_TS, OPT_WSCALE, PSH,
    RST, SYN, URG, Segment, build, complete, find_option_offset, int2ip, ip2int, options, parse,
    rewrite, set_tsecr, set_tsval, syn_options, timestamps, trim_front,
)  # fmt: skip

from .packets import TS_DATA, add_ip_options, random_packet, scapy_checksums, stored_checksums

SYNACK_OPTIONS = bytes.fromhex("020405b40402080a0004a3f100882a9c01030307")
SRC, DST = ip2int("61.135.233.160"), ip2int("62.135.200.17")


def synack() -> bytearray:
    return build(SRC, DST, 8080, 40000, 0x1A2B3C4D, 0x00BC614F, SYN | ACK, 28960, SYNACK_OPTIONS)


def tcp_bytes(seg: Segment) -> bytes:
    return bytes(seg.buf[seg.tcp_off : seg.off + seg.tot_len])


# --- constants and addresses -------------------------------------------------------------------


def test_flag_bits_are_the_tcp_header_bits() -> None:
    assert [FIN, SYN, RST, PSH, ACK, URG, ECE, CWR] == [1 << i for i in range(8)]
    assert IPPROTO_TCP == 6
    assert (OPT_MSS, OPT_WSCALE, OPT_SACK_PERM, OPT_TS, OPT_TOA) == (2, 3, 4, 8, 254)


def test_ip2int_int2ip_round_trip() -> None:
    assert ip2int("62.135.200.17") == 0x3E87C811
    assert int2ip(0x3E87C811) == "62.135.200.17"
    assert int2ip(ip2int("0.0.0.0")) == "0.0.0.0"
    assert ip2int("255.255.255.255") == 0xFFFFFFFF


@pytest.mark.parametrize("bad", ["1.2.3", "256.1.1.1", "::1", "", "1.2.3.4 "])
def test_ip2int_rejects_non_dotted_quads(bad: str) -> None:
    with pytest.raises(ValueError):
        ip2int(bad)


@pytest.mark.parametrize("bad", [-1, 2**32])
def test_int2ip_rejects_out_of_range(bad: int) -> None:
    with pytest.raises(ValueError):
        int2ip(bad)


# --- parse ----------------------------------------------------------------------------------


def test_parse_reference_synack() -> None:
    seg = parse(synack())
    assert (seg.off, seg.ihl, seg.tot_len, seg.ip_id, seg.ttl) == (0, 20, 60, 0, 64)
    assert (seg.src, seg.dst, seg.sport, seg.dport) == (SRC, DST, 8080, 40000)
    assert (seg.seq, seg.ack, seg.window) == (0x1A2B3C4D, 0x00BC614F, 28960)
    assert (seg.doff, seg.flags) == (40, SYN | ACK)
    assert (seg.payload_off, seg.payload_len, seg.tcp_off) == (60, 0, 20)
    assert complete(seg)
    assert "61.135.233.160:8080 > 62.135.200.17:40000" in repr(seg)


def test_parse_agrees_with_scapy_on_random_packets() -> None:
    rng = random.Random(11)
    for i in range(300):
        pkt = random_packet(rng, ip_options=4 * (i % 3))
        seg = parse(pkt)
        ip = IP(bytes(pkt))
        tcp = ip[TCP]
        assert (int2ip(seg.src), int2ip(seg.dst)) == (ip.src, ip.dst)
        assert (seg.ip_id, seg.ttl) == (ip.id, ip.ttl)
        assert (seg.ihl, seg.tot_len) == (ip.ihl * 4, ip.len)
        assert (seg.sport, seg.dport, seg.seq, seg.ack) == (tcp.sport, tcp.dport, tcp.seq, tcp.ack)
        assert (seg.doff, seg.flags, seg.window) == (tcp.dataofs * 4, int(tcp.flags), tcp.window)
        assert bytes(pkt[seg.payload_off : seg.payload_off + seg.payload_len]) == bytes(tcp.payload)


def test_parse_at_offset_on_memoryview_and_bytes() -> None:
    pkt = build(1, 2, 3, 4, 5, 6, ACK | PSH, payload=b"hello")
    frame = b"\xaa" * 14 + bytes(pkt) + b"\0" * 5  # Ethernet header and minimum-frame padding
    for buf in (frame, bytearray(frame), memoryview(frame)):
        seg = parse(buf, 14)
        assert seg.buf is buf
        assert (seg.off, seg.payload_off, seg.payload_len) == (14, 54, 5)
        assert bytes(buf[seg.payload_off : seg.payload_off + seg.payload_len]) == b"hello"
        assert complete(seg)


def test_parse_headers_only_buffer_takes_payload_len_from_tot_len() -> None:
    full = build(SRC, DST, 8080, 40000, 1, 2, ACK, options=TS_DATA, payload=bytes(1448))
    seg = parse(full[:52])
    assert (seg.tot_len, seg.doff, seg.payload_len) == (1500, 32, 1448)
    assert not complete(seg)
    assert timestamps(seg) == (0, 0)


def test_parse_ip_options() -> None:
    pkt = add_ip_options(build(1, 2, 3, 4, 5, 6, ACK, payload=b"xy"), 8)
    seg = parse(pkt)
    assert (seg.ihl, seg.tcp_off, seg.payload_off, seg.payload_len) == (28, 28, 48, 2)
    assert (seg.sport, seg.dport, seg.seq, seg.ack) == (3, 4, 5, 6)


def test_parse_accepts_record_with_tcp_header_cut_at_44_bytes() -> None:
    # A 60-byte TCP header (SACK blocks + TS) is cut to 44 in a control-channel record; the
    # fixed fields must still be readable.
    opts = bytes([1, 1, 8, 10]) + bytes(range(8)) + bytes([1, 1, 5, 26]) + bytes(range(24, 48))
    pkt = build(SRC, DST, 80, 40000, 9, 10, ACK, options=opts, payload=bytes(100))
    record = bytes(pkt[:64])
    seg = parse(record)
    assert (seg.doff, seg.seq, seg.ack, seg.payload_len) == (60, 9, 10, 100)
    assert options(seg) == [(OPT_TS, bytes(range(8)))]  # the SACK option is cut off: not returned
    assert find_option_offset(record, 20, 60, 5) == -1
    assert timestamps(seg) == (0x00010203, 0x04050607)


def _hdr(**kw: int) -> bytearray:
    """A 40-byte IPv4/TCP header with fields overridden by raw byte values."""
    pkt = build(1, 2, 3, 4, 5, 6, ACK, payload=bytes(10))
    for pos, value in kw.items():
        pkt[int(pos[1:])] = value
    return pkt


@pytest.mark.parametrize(
    ("buf", "message"),
    [
        (bytes(19), "truncated IPv4 header"),
        (b"", "truncated IPv4 header"),
        (_hdr(b0=0x65), "not IPv4: version 6"),
        (_hdr(b0=0x44), "bad IPv4 header length 16"),
        (_hdr(b9=17), "not TCP: IP protocol 17"),
        (_hdr(b6=0x20), "IPv4 fragment"),  # MF
        (_hdr(b6=0x40, b7=0x00), None),  # DF alone is fine
        (_hdr(b6=0x00, b7=0x01), "IPv4 fragment"),  # offset 8
        (_hdr(b32=0x40), "bad TCP data offset 16"),
        (_hdr(b2=0, b3=39), "tot_len 39 shorter than headers"),
        (_hdr()[:39], "truncated TCP header"),
        (_hdr(b0=0x46)[:43], "truncated TCP header"),
        (_hdr(b0=0x4F), "truncated TCP header"),  # ihl 60 in a 50-byte buffer
    ],
)
def test_parse_errors(buf: bytes, message: str | None) -> None:
    if message is None:
        assert parse(buf).seq == 5
        return
    with pytest.raises(WireError, match=message) as info:
        parse(buf)
    assert "\n" not in str(info.value)


def test_parse_error_for_offset_past_the_end() -> None:
    with pytest.raises(WireError, match="truncated IPv4 header"):
        parse(bytes(build(1, 2, 3, 4, 5, 6, ACK)), 100)


# --- options --------------------------------------------------------------------------------


def test_options_of_reference_synack() -> None:
    seg = parse(synack())
    assert options(seg) == [
        (OPT_MSS, b"\x05\xb4"),
        (OPT_SACK_PERM, b""),
        (OPT_TS, bytes.fromhex("0004a3f100882a9c")),
        (OPT_WSCALE, b"\x07"),
    ]
    assert syn_options(seg) == (1460, 7, True, (0x0004A3F1, 0x00882A9C))
    assert timestamps(seg) == (0x0004A3F1, 0x00882A9C)


def test_options_stop_at_eol_and_skip_nop() -> None:
    seg = parse(build(1, 2, 3, 4, 5, 6, SYN, options=bytes.fromhex("01010402 00 020405b4")))
    assert options(seg) == [(OPT_SACK_PERM, b"")]  # the MSS after EOL is not an option
    assert syn_options(seg) == (None, None, True, None)


@pytest.mark.parametrize(
    ("opts", "message"),
    [
        (bytes.fromhex("01020004b4"), "bad length 0"),
        (bytes.fromhex("02010000"), "bad length 1"),
        (bytes.fromhex("0101020a"), "runs past the TCP header"),
        (bytes.fromhex("01010102"), "no length byte"),
    ],
)
def test_options_errors(opts: bytes, message: str) -> None:
    seg = parse(build(1, 2, 3, 4, 5, 6, SYN, options=opts))
    with pytest.raises(WireError, match=message):
        options(seg)
    # The hot-path helpers are tolerant: malformed means "not found".
    assert find_option_offset(seg.buf, 20, seg.doff, OPT_TS) == -1
    assert timestamps(seg) is None


def test_find_option_offset() -> None:
    pkt = synack()
    assert find_option_offset(pkt, 20, 40, OPT_MSS) == 40
    assert find_option_offset(pkt, 20, 40, OPT_SACK_PERM) == 44
    assert find_option_offset(pkt, 20, 40, OPT_TS) == 46
    assert find_option_offset(pkt, 20, 40, OPT_WSCALE) == 57
    assert find_option_offset(pkt, 20, 40, OPT_TOA) == -1
    assert find_option_offset(pkt, 20, 20, OPT_MSS) == -1  # doff says: no options
    data = build(1, 2, 3, 4, 5, 6, ACK, options=TS_DATA, payload=b"\x08\x0a")
    assert find_option_offset(data, 20, 32, OPT_TS) == 42
    framed = b"\0" * 14 + bytes(data)
    assert find_option_offset(framed, 34, 32, OPT_TS) == 56


def test_syn_options_ignore_wrong_lengths() -> None:
    opts = bytes.fromhex("0203ff 030402ff 0403ff 08060102 0304")  # MSS/WS/SACK/TS, wrong lengths
    seg = parse(build(1, 2, 3, 4, 5, 6, SYN, options=opts))
    assert len(options(seg)) == 4
    assert syn_options(seg) == (None, None, False, None)


def test_timestamps_absent_or_bad_length() -> None:
    assert timestamps(parse(build(1, 2, 3, 4, 5, 6, ACK))) is None
    short_ts = bytes.fromhex("0101080401020304")  # TS kind with length 4
    assert timestamps(parse(build(1, 2, 3, 4, 5, 6, ACK, options=short_ts))) is None


# --- build ----------------------------------------------------------------------------------


def test_build_reproduces_reference_synack_bytes() -> None:
    assert synack() == bytes.fromhex(
        "4500003c000040004006 0cfc 3d87e9a0 3e87c811 1f909c40 1a2b3c4d 00bc614f a012 7120"
        " 65a1 0000 020405b40402080a0004a3f100882a9c01030307".replace(" ", "")
    )


def test_build_validated_by_scapy() -> None:
    rng = random.Random(5)
    for _ in range(200):
        opts = rng.choice([b"", b"\x02\x04\x05\xb4", b"\x01\x03\x03\x07", b"\x04\x02", TS_DATA[2:]])
        payload = rng.randbytes(rng.choice([0, 1, 2, 513, 1460]))
        df = rng.random() < 0.5
        pkt = build(
            rng.randrange(2**32), rng.randrange(2**32), rng.randrange(65536), rng.randrange(65536),
            rng.randrange(2**32), rng.randrange(2**32), rng.randrange(256), rng.randrange(65536),
            opts, payload, rng.randrange(65536), rng.randrange(256), df,
        )  # fmt: skip
        ip = IP(bytes(pkt))
        assert len(pkt) == ip.len == 20 + ip[TCP].dataofs * 4 + len(payload)
        assert ip.ihl == 5 and ip.proto == 6 and ip.frag == 0 and (ip.flags == "DF") == df
        assert ip[TCP].dataofs * 4 == 20 + len(opts) + (-len(opts) % 4)
        assert bytes(pkt[40 : 40 + len(opts)]) == opts
        pad = bytes(pkt[40 + len(opts) : 20 + ip[TCP].dataofs * 4])
        assert pad == bytes(-len(opts) % 4)  # EOL (zero) padding
        assert bytes(ip[TCP].payload) == payload
        assert scapy_checksums(pkt) == (ip.chksum, ip[TCP].chksum)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"options": bytes(41)},
        {"payload": bytes(65536 - 40)},
        {"window": 65536},
        {"ttl": 256},
    ],
)
def test_build_rejects_misuse(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        build(1, 2, 3, 4, 5, 6, ACK, **kwargs)  # type: ignore[arg-type]


def test_build_rejects_out_of_range_port() -> None:
    with pytest.raises(ValueError):
        build(1, 2, 70000, 4, 5, 6, ACK)


# --- rewrite --------------------------------------------------------------------------------

FIELDS = ("src", "sport", "dst", "dport", "seq", "ack", "window")
WIDTH = {
    "src": 2**32, "dst": 2**32, "seq": 2**32, "ack": 2**32,
    "sport": 65536, "dport": 65536, "window": 65536,
}  # fmt: skip
# (offset, length) of each field relative to the IP header (ip=True) or the TCP header.
WHERE = {
    "src": (True, 12, 4), "dst": (True, 16, 4), "sport": (False, 0, 2), "dport": (False, 2, 2),
    "seq": (False, 4, 4), "ack": (False, 8, 4), "window": (False, 14, 2),
}  # fmt: skip


def test_rewrite_random_packets_against_full_recompute() -> None:
    rng = random.Random(20240607)
    shapes: set[tuple[bool, bool]] = set()  # (an address given, IPv4 options): rewrite's 3 paths
    for i in range(1500):
        pkt = random_packet(rng, ip_options=(0, 0, 0, 4, 12)[i % 5])
        off = rng.choice([0, 0, 14])
        buf = bytearray(rng.randbytes(off)) + pkt
        seg = parse(buf, off)
        given = {f: rng.randrange(WIDTH[f]) for f in rng.sample(FIELDS, rng.randrange(1, 8))}
        if rng.random() < 0.1:  # a value equal to the old one is a legal no-op
            given["ack"] = seg.ack
        shapes.add(("src" in given or "dst" in given, seg.ihl > 20))
        work = bytearray(buf)
        rewrite(work, off, seg, **given)

        expected = bytearray(work)
        fill_checksums(expected, off)
        assert work == expected, (i, given)
        assert verify(work, off)

        new = parse(work, off)
        for name in FIELDS:
            assert getattr(new, name) == given.get(name, getattr(seg, name)), (i, name)
        # Nothing outside the given fields and the two checksums changed.
        changed = {j for j in range(len(buf)) if buf[j] != work[j]}
        allowed = {off + 10, off + 11, off + seg.ihl + 16, off + seg.ihl + 17}
        for name in given:
            is_ip, rel, width = WHERE[name]
            start = off + (rel if is_ip else seg.ihl + rel)
            allowed |= set(range(start, start + width))
        assert changed <= allowed, (i, given)
    assert shapes == {(False, False), (False, True), (True, False), (True, True)}


def test_rewrite_matches_scapy() -> None:
    rng = random.Random(99)
    for _ in range(200):
        pkt = random_packet(rng)
        seg = parse(pkt)
        dst, dport, ack = rng.randrange(2**32), rng.randrange(65536), rng.randrange(2**32)
        rewrite(pkt, 0, seg, dst=dst, dport=dport, ack=ack)
        assert stored_checksums(pkt) == scapy_checksums(pkt)


def test_rewrite_into_a_zero_checksum_and_from_0xffff() -> None:
    # Find a rewrite whose canonical TCP checksum is 0x0000: a full recompute gives 0, and so
    # must the incremental update. Then store 0xFFFF (the other zero) and rewrite again.
    pkt = build(ip2int("10.0.0.1"), ip2int("10.0.0.2"), 1000, 80, 1, 2, ACK, payload=b"xyz")
    seg = parse(pkt)
    c = int.from_bytes(pkt[36:38], "big")
    target_window = (seg.window + c) % 0xFFFF  # raises the sum by c, making it ≡ 0
    rewrite(pkt, 0, seg, window=target_window)
    assert stored_checksums(pkt)[1] == 0x0000 == scapy_checksums(pkt)[1]
    pkt[36:38] = b"\xff\xff"
    seg = parse(pkt)
    rewrite(pkt, 0, seg, seq=12345)
    assert stored_checksums(pkt) == scapy_checksums(pkt)


def test_rewrite_with_stale_segment_still_checksums_right() -> None:
    pkt = random_packet(random.Random(1))
    seg = parse(bytes(pkt))
    rewrite(pkt, 0, seg, ack=1, dst=2)
    rewrite(pkt, 0, seg, ack=3, seq=4)  # seg still describes the first state
    assert verify(pkt)
    new = parse(pkt)
    assert (new.ack, new.seq, new.dst) == (3, 4, 2)


def test_rewrite_nothing_changes_nothing() -> None:
    pkt = random_packet(random.Random(2))
    before = bytes(pkt)
    rewrite(pkt, 0, parse(before))
    assert pkt == before


# --- timestamps in place --------------------------------------------------------------------


@pytest.mark.parametrize("layout", ["nop-nop-ts", "syn", "odd-offset", "ip-options"])
def test_set_tsval_tsecr_checksum(layout: str) -> None:
    rng = random.Random(layout)
    opts = {
        "nop-nop-ts": TS_DATA,
        "syn": bytes.fromhex("020405b40402080a") + bytes(8) + bytes.fromhex("01030307"),
        "odd-offset": bytes.fromhex("01080a") + bytes(8),
        "ip-options": TS_DATA,
    }[layout]
    for _ in range(200):
        pkt = build(
            rng.randrange(2**32), rng.randrange(2**32), 1, 2, 3, 4, ACK,
            options=opts, payload=rng.randbytes(rng.randrange(0, 9)),
        )  # fmt: skip
        off = 0
        if layout == "ip-options":
            pkt = add_ip_options(pkt, 4)
        seg = parse(pkt)
        ts_off = find_option_offset(pkt, seg.tcp_off, seg.doff, OPT_TS)
        assert ts_off >= 0 and (layout != "odd-offset" or (ts_off - seg.tcp_off) % 2 == 1)
        tsval, tsecr = rng.randrange(2**32), rng.randrange(2**32)
        set_tsval(pkt, ts_off, tsval, off)
        set_tsecr(pkt, ts_off, tsecr, off)
        assert timestamps(parse(pkt)) == (tsval, tsecr)
        assert verify(pkt)
        assert stored_checksums(pkt) == scapy_checksums(pkt)


def test_set_tsecr_at_offset() -> None:
    pkt = bytearray(b"\0" * 14) + build(1, 2, 3, 4, 5, 6, ACK, options=TS_DATA, payload=b"abc")
    seg = parse(pkt, 14)
    ts_off = find_option_offset(pkt, seg.tcp_off, seg.doff, OPT_TS)
    set_tsecr(pkt, ts_off, 0xFEEDFACE, 14)
    assert verify(pkt, 14)
    assert timestamps(parse(pkt, 14)) == (0, 0xFEEDFACE)


# --- trim_front -----------------------------------------------------------------------------


def test_trim_front() -> None:
    payload = bytes(range(200)) + b"!"  # odd length
    flags = ACK | PSH | FIN
    pkt = build(SRC, DST, 40000, 80, 0xFFFFFFF0, 7, flags, options=TS_DATA, payload=payload)
    frame = b"\xee" * 14 + bytes(pkt)
    seg = parse(frame, 14)
    for n in (0, 1, 16, 17, 200, 201):
        out = trim_front(frame, 14, seg, n)
        new = parse(out)
        assert bytes(out[new.payload_off :]) == payload[n:]
        assert new.seq == (0xFFFFFFF0 + n) & 0xFFFFFFFF  # wraps past 2**32
        assert (new.tot_len, len(out)) == (seg.tot_len - n, seg.tot_len - n)
        assert (new.flags, new.ack, new.doff) == (seg.flags, seg.ack, seg.doff)
        assert timestamps(new) == (0, 0)
        assert verify(out)
        assert stored_checksums(out) == scapy_checksums(out)


def test_trim_front_with_ip_options() -> None:
    pkt = add_ip_options(build(1, 2, 3, 4, 100, 6, ACK, payload=b"0123456789"), 4)
    out = trim_front(bytes(pkt), 0, parse(pkt), 4)
    new = parse(out)
    assert (new.ihl, new.seq, bytes(out[new.payload_off :])) == (24, 104, b"456789")
    assert verify(out)


def test_trim_front_moves_or_clears_urgent_pointer() -> None:
    pkt = build(1, 2, 3, 4, 100, 6, ACK | URG, payload=b"0123456789")
    pkt[38:40] = (5).to_bytes(2, "big")
    fill_checksums(pkt)
    seg = parse(pkt)
    kept = trim_front(pkt, 0, seg, 2)
    assert parse(kept).flags & URG and kept[38:40] == (3).to_bytes(2, "big")
    gone = trim_front(pkt, 0, seg, 5)
    assert not parse(gone).flags & URG and gone[38:40] == b"\0\0"
    assert verify(kept) and verify(gone)


@pytest.mark.parametrize("n", [-1, 11])
def test_trim_front_rejects_bad_count(n: int) -> None:
    pkt = build(1, 2, 3, 4, 5, 6, ACK, payload=b"0123456789")
    with pytest.raises(ValueError):
        trim_front(pkt, 0, parse(pkt), n)


def test_trim_front_rejects_incomplete_packet() -> None:
    pkt = build(1, 2, 3, 4, 5, 6, ACK, payload=b"0123456789")
    with pytest.raises(ValueError):
        trim_front(pkt[:45], 0, parse(pkt[:45]), 1)


# --- MSS clamping ------------------------------------------------------------------------------


@pytest.mark.parametrize("lead", [b"", b"\x01", b"\x01\x01\x01"])
def test_clamp_mss_lowers_it_with_a_right_checksum_at_any_alignment(lead: bytes) -> None:
    from nfreplay.proto.tcpip import clamp_mss

    pkt = build(SRC, DST, 40000, 80, 1, 0, SYN, options=lead + b"\x02\x04\x23\x28")  # 9000
    assert clamp_mss(pkt, 1410)
    assert verify(pkt) and syn_options(parse(pkt))[0] == 1410
    assert not clamp_mss(pkt, 1410) and not clamp_mss(pkt, 1460)  # already small enough
    bare = build(SRC, DST, 40000, 80, 1, 0, SYN)
    assert not clamp_mss(bare, 536) and verify(bare)
