"""The tcpcopy/intercept control channel: reference §1.9 vectors, framing, split boundaries."""

import random
import struct
from collections.abc import Callable

import pytest

from nfreplay.errors import WireError
from nfreplay.proto.channel import (
    COMB_MAX, DEFAULT_PORT, MAX_TCP_HEADER_IN_RECORD, MSG_MIN_SIZE, MSG_SIZE, RECORD_SIZE,
    TYPE_CLIENT_ADD, TYPE_CLIENT_DEL, VERSION, ClientMessage, FrameDecoder, MessageDecoder,
    encode_client_add, encode_frame, encode_frames, encode_version, make_record,
)  # fmt: skip
from nfreplay.proto.tcpip import (
    ACK, OPT_MSS, OPT_SACK_PERM, OPT_TS, OPT_WSCALE, PSH, SYN, build, ip2int, options, parse,
    syn_options, timestamps,
)  # fmt: skip

from .packets import TS_DATA, add_ip_options

CLT_IP, CLT_PORT = ip2int("62.135.200.17"), 40000
TGT_IP, TGT_PORT = ip2int("61.135.233.160"), 8080

# Reference §1.9, byte for byte.
VERSION_HEX = "00000000 0000 0006 00000000 0000"
CLIENT_ADD_HEX = "3e87c811 9c40 0001 3d87e9a0 1f90"
FRAME_HEX = (
    "0001"
    "45 00 00 3c 00 00 40 00 40 06 0c fc 3d 87 e9 a0 3e 87 c8 11"
    "1f 90 9c 40 1a 2b 3c 4d 00 bc 61 4f a0 12 71 20 65 a1 00 00"
    "02 04 05 b4 04 02 08 0a 00 04 a3 f1 00 88 2a 9c 01 03 03 07"
    "00 00 00 00"
)


def unhex(s: str) -> bytes:
    return bytes.fromhex(s.replace(" ", ""))


FRAME = unhex(FRAME_HEX)
HANDSHAKE = unhex(VERSION_HEX) + unhex(CLIENT_ADD_HEX)


def test_constants() -> None:
    assert (DEFAULT_PORT, VERSION, MSG_SIZE, MSG_MIN_SIZE) == (36524, 6, 14, 8)
    assert (RECORD_SIZE, COMB_MAX, MAX_TCP_HEADER_IN_RECORD) == (64, 16, 44)
    assert (TYPE_CLIENT_ADD, TYPE_CLIENT_DEL) == (1, 2)


# --- online → assist messages ---------------------------------------------------------------


def test_encode_version_is_reference_bytes() -> None:
    assert encode_version() == bytes(6) + b"\x00\x06" + bytes(6)
    assert encode_version() == unhex(VERSION_HEX)


def test_encode_client_add_is_reference_bytes() -> None:
    msg = encode_client_add(CLT_IP, CLT_PORT, TGT_IP, TGT_PORT)
    assert msg == unhex(CLIENT_ADD_HEX) == bytes.fromhex("3e87c8119c4000013d87e9a01f90")
    assert encode_version() + msg == HANDSHAKE and len(HANDSHAKE) == 28


@pytest.mark.parametrize("args", [(-1, 1, 1, 1), (1, 65536, 1, 1), (2**32, 1, 1, 1), (1, 1, 1, -5)])
def test_encode_client_add_rejects_out_of_range(args: tuple[int, int, int, int]) -> None:
    with pytest.raises(ValueError):
        encode_client_add(*args)


def _stream() -> tuple[bytes, list[ClientMessage]]:
    msgs = [
        ClientMessage(CLT_IP, CLT_PORT, TYPE_CLIENT_ADD, TGT_IP, TGT_PORT),
        ClientMessage(ip2int("10.1.2.3"), 1, TYPE_CLIENT_ADD, TGT_IP, 65535),
        ClientMessage(ip2int("10.1.2.4"), 2, TYPE_CLIENT_DEL, 0, 0),
        ClientMessage(0xFFFFFFFF, 65535, 77, 0xFFFFFFFF, 65535),  # unknown type: passed on
    ]
    # Types other than CLIENT_ADD have no encoder (tcpcopy never sends them): pack by hand.
    data = encode_version() + b"".join(struct.pack("!IHHIH", *m) for m in msgs)
    assert data[14:28] == encode_client_add(CLT_IP, CLT_PORT, TGT_IP, TGT_PORT)
    return data, msgs


def test_message_decoder_reference_handshake() -> None:
    dec = MessageDecoder()
    assert dec.version is None and not dec.version_mismatch
    assert dec.feed(HANDSHAKE) == [
        ClientMessage(CLT_IP, CLT_PORT, TYPE_CLIENT_ADD, TGT_IP, TGT_PORT)
    ]
    assert dec.version == VERSION and not dec.version_mismatch


def _feed_split(dec: MessageDecoder | FrameDecoder, data: bytes, cuts: list[int]) -> list[object]:
    out: list[object] = []
    prev = 0
    for cut in [*cuts, len(data)]:
        out += dec.feed(data[prev:cut])
        prev = cut
    return out


def test_message_decoder_any_split() -> None:
    data, msgs = _stream()
    for cut in range(len(data) + 1):
        assert _feed_split(MessageDecoder(), data, [cut]) == msgs, cut
    for a in range(0, len(data), 3):
        for b in range(a, len(data), 5):
            assert _feed_split(MessageDecoder(), data, [a, b]) == msgs, (a, b)
    one_byte = MessageDecoder()
    assert _feed_split(one_byte, data, list(range(1, len(data)))) == msgs
    assert one_byte.version == VERSION


def test_message_decoder_keeps_a_partial_message() -> None:
    dec = MessageDecoder()
    data, msgs = _stream()
    assert dec.feed(data[:14 + 13]) == []
    assert dec.feed(data[27:28]) == msgs[:1]
    assert dec.feed(memoryview(data)[28:]) == msgs[1:]
    assert dec.feed(b"") == []


@pytest.mark.parametrize(
    "first",
    [
        unhex(CLIENT_ADD_HEX),
        bytes(4) + b"\x9c\x40" + b"\x00\x06",  # port alone is nonzero
        b"\x00\x00\x00\x01" + bytes(4),  # ip alone is nonzero
    ],
)
def test_message_decoder_rejects_old_client_after_8_bytes(first: bytes) -> None:
    dec = MessageDecoder()
    assert dec.feed(first[:7]) == []
    with pytest.raises(WireError, match="^peer too old: first message is not a version message$"):
        dec.feed(first[7:8])  # decided on the 8th byte, as intercept does
    with pytest.raises(ValueError):
        dec.feed(encode_version())


@pytest.mark.parametrize("version", [0, 5, 7, 0xFFFF])
def test_message_decoder_version_mismatch_is_accepted_and_flagged(version: int) -> None:
    dec = MessageDecoder()
    hello = bytes(6) + version.to_bytes(2, "big") + bytes(6)
    assert dec.feed(hello[:8]) == []
    assert dec.version == version and dec.version_mismatch  # known before the 14th byte
    assert dec.feed(hello[8:] + unhex(CLIENT_ADD_HEX)) == [
        ClientMessage(CLT_IP, CLT_PORT, TYPE_CLIENT_ADD, TGT_IP, TGT_PORT)
    ]


def test_message_decoder_ignores_the_version_message_target_fields() -> None:
    dec = MessageDecoder()
    hello = bytes(6) + b"\x00\x06" + b"\xff" * 6  # intercept never looks at bytes 8..13
    assert dec.feed(hello + unhex(CLIENT_ADD_HEX)) == [
        ClientMessage(CLT_IP, CLT_PORT, 1, TGT_IP, TGT_PORT)
    ]
    assert not dec.version_mismatch


# --- assist → online records ----------------------------------------------------------------

SYNACK_OPTIONS = unhex("020405b40402080a0004a3f100882a9c01030307")


def synack() -> bytearray:
    return build(
        TGT_IP, CLT_IP, TGT_PORT, CLT_PORT, 0x1A2B3C4D, 0x00BC614F, SYN | ACK, 28960, SYNACK_OPTIONS
    )


def test_make_record_of_reference_synack_is_the_reference_record() -> None:
    rec = make_record(synack())
    assert rec == FRAME[2:] and isinstance(rec, bytes)
    assert encode_frame([rec]) == FRAME


def test_frame_decoder_reference_frame() -> None:
    (rec,) = FrameDecoder().feed(FRAME)
    assert len(rec) == RECORD_SIZE
    seg = parse(rec)
    assert seg.flags == SYN | ACK
    assert (seg.seq, seg.ack, seg.window, seg.payload_len) == (0x1A2B3C4D, 0x00BC614F, 28960, 0)
    assert (seg.src, seg.dst, seg.sport, seg.dport) == (TGT_IP, CLT_IP, TGT_PORT, CLT_PORT)
    assert syn_options(seg) == (1460, 7, True, (0x0004A3F1, 0x00882A9C))
    assert [k for k, _ in options(seg)] == [OPT_MSS, OPT_SACK_PERM, OPT_TS, OPT_WSCALE]


def test_frame_decoder_reference_frame_at_every_split() -> None:
    for cut in range(len(FRAME) + 1):
        assert _feed_split(FrameDecoder(), FRAME, [cut]) == [FRAME[2:]], cut
    assert _feed_split(FrameDecoder(), FRAME, list(range(1, len(FRAME)))) == [FRAME[2:]]
    assert _feed_split(FrameDecoder(), FRAME, list(range(2, len(FRAME), 2))) == [FRAME[2:]]


def _records(n: int, seed: int = 0) -> list[bytes]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        pkt = build(TGT_IP, CLT_IP, TGT_PORT, 1024 + i, rng.randrange(2**32), i, ACK | PSH,
                    options=TS_DATA, payload=bytes(rng.randrange(1449)))  # fmt: skip
        out.append(make_record(pkt))
    return out


@pytest.mark.parametrize("n", range(1, COMB_MAX + 1))
def test_frames_of_1_to_16_records(n: int) -> None:
    recs = _records(n, seed=n)
    frame = encode_frame(recs)
    assert frame[:2] == n.to_bytes(2, "big") and len(frame) == 2 + 64 * n
    assert FrameDecoder().feed(frame) == recs
    rng = random.Random(n)
    cuts = sorted(rng.sample(range(1, len(frame)), min(10, len(frame) - 1)))
    assert _feed_split(FrameDecoder(), frame, cuts) == recs
    assert _feed_split(FrameDecoder(), frame, list(range(1, len(frame)))) == recs
    assert [parse(r).dport for r in FrameDecoder().feed(frame)] == list(range(1024, 1024 + n))


def test_encode_frames_and_decode_many_frames_in_one_feed() -> None:
    recs = _records(40)
    data = encode_frames(recs)
    assert len(data) == 3 * 2 + 40 * 64
    assert data[:2] == b"\x00\x10" and data[2 + 16 * 64 : 4 + 16 * 64] == b"\x00\x10"
    assert data[4 + 32 * 64 : 6 + 32 * 64] == b"\x00\x08"
    assert FrameDecoder().feed(data) == recs
    assert encode_frames([]) == b""
    assert encode_frames(recs[:16]) == encode_frame(recs[:16])


def test_frame_decoder_keeps_partial_frames() -> None:
    recs = _records(3)
    data = encode_frame(recs[:2]) + encode_frame(recs[2:])
    dec = FrameDecoder()
    assert dec.feed(data[:2 + 64 + 63]) == []
    assert dec.feed(data[129:131]) == recs[:2]  # completes frame 1 and starts frame 2's count
    assert dec.feed(data[131:]) == recs[2:]


@pytest.mark.parametrize("count", [0, 17, 0x4500, 0xFFFF])
def test_frame_decoder_rejects_bad_count_as_soon_as_it_arrives(count: int) -> None:
    dec = FrameDecoder()
    good = encode_frame(_records(1))
    assert dec.feed(good + count.to_bytes(2, "big")[:1]) == [good[2:]]
    with pytest.raises(WireError, match=f"bad frame count {count}"):
        dec.feed(count.to_bytes(2, "big")[1:])
    with pytest.raises(ValueError):
        dec.feed(good)


@pytest.mark.parametrize(
    ("records", "message"),
    [
        ([], "0 records"),
        ([bytes(64)] * 17, "17 records"),
        ([bytes(63)], "63 bytes"),
        ([bytes(64), bytes(65)], "65 bytes"),
    ],
)
def test_encode_frame_rejects_misuse(records: list[bytes], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        encode_frame(records)


def test_make_record_copies_tcp_header_up_to_44_bytes_and_pads_with_zeros() -> None:
    for opts in (b"", b"\x01" * 4, TS_DATA, b"\x01" * 12 + TS_DATA):
        olen = len(opts)
        pkt = build(TGT_IP, CLT_IP, 80, 40000, 1, 2, ACK, options=opts, payload=b"\xaa" * 300)
        rec = make_record(pkt)
        hdr = 40 + olen
        assert len(rec) == 64
        assert rec[:hdr] == pkt[:hdr]  # IP header (checksum included) and TCP header verbatim
        assert rec[hdr:] == bytes(64 - hdr)  # no payload bytes, zero fill
        seg = parse(rec)
        assert (seg.tot_len, seg.payload_len) == (40 + olen + 300, 300)


def test_make_record_truncates_tcp_header_over_44_bytes() -> None:
    opts = bytes([1] * 36 + [0] * 4)  # a 60-byte TCP header
    pkt = build(TGT_IP, CLT_IP, 80, 40000, 1, 2, ACK, options=opts, payload=b"\xaa" * 10)
    pkt[64:80] = b"\xbb" * 16  # the TCP header's last 16 bytes, which must not appear
    rec = make_record(pkt)
    assert rec == bytes(pkt[:64])  # 20 + 44 bytes, nothing else
    assert b"\xbb" not in rec and b"\xaa" not in rec
    seg = parse(rec)
    assert (seg.doff, seg.payload_len) == (60, 10)


def test_make_record_normalises_ip_options() -> None:
    plain = build(TGT_IP, CLT_IP, 80, 40000, 5, 6, ACK | PSH, options=TS_DATA, payload=bytes(1448))
    pkt = add_ip_options(plain, 8)
    assert pkt[0] == 0x47
    rec = make_record(pkt)
    assert rec[0] == 0x45
    assert int.from_bytes(rec[2:4], "big") == 1500  # 1508 on the wire minus 8 option bytes
    assert rec[4:10] == pkt[4:10] and rec[12:20] == pkt[12:20]
    assert rec[20:52] == pkt[28:60]  # the TCP header follows the 20 IP bytes
    assert rec[52:] == bytes(12)
    seg = parse(rec)
    assert (seg.ihl, seg.seq, seg.ack, seg.payload_len) == (20, 5, 6, 1448)
    assert timestamps(seg) == (0, 0)


def test_make_record_of_1448_byte_response() -> None:
    pkt = build(TGT_IP, CLT_IP, 80, 40000, 5, 6, ACK | PSH, options=TS_DATA, payload=bytes(1448))
    for buf, off in ((pkt, 0), (bytes(14) + bytes(pkt), 14), (memoryview(bytes(pkt)), 0)):
        rec = make_record(buf, off)
        seg = parse(rec)
        assert (seg.tot_len, seg.doff, seg.payload_len) == (1500, 32, 1448)
        assert rec[52:] == bytes(12)


def _mutated(fn: Callable[[bytearray], object]) -> bytearray:
    pkt = build(TGT_IP, CLT_IP, 80, 40000, 5, 6, ACK, payload=bytes(20))
    fn(pkt)
    return pkt


@pytest.mark.parametrize(
    ("pkt", "message"),
    [
        (bytes(39), "too short"),
        (_mutated(lambda p: p.__setitem__(0, 0x65)), "not a valid IPv4"),
        (_mutated(lambda p: p.__setitem__(0, 0x44)), "not a valid IPv4"),
        (_mutated(lambda p: p.__setitem__(9, 17)), "not TCP"),
        (_mutated(lambda p: p.__setitem__(6, 0x20)), "fragment"),
        (_mutated(lambda p: p.__setitem__(0, 0x4F)), "too short for its headers"),
        (_mutated(lambda p: p.__setitem__(32, 0x40)), "bad TCP data offset"),
        (_mutated(lambda p: p.__setitem__(32, 0xF0)), "bad TCP data offset"),  # 60 > 60 bytes here
        (_mutated(lambda p: p.__setitem__(3, 39)), "shorter than headers"),
    ],
)
def test_make_record_errors(pkt: bytes, message: str) -> None:
    with pytest.raises(WireError, match=message):
        make_record(pkt)
