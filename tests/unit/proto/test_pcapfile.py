"""pcap/pcapng reading (formats, link types, robustness, streaming) and pcap writing."""

from __future__ import annotations

import builtins
import gzip
import io
import random
import struct
from collections.abc import Iterable
from pathlib import Path

import pytest
from scapy.layers.inet import IP, TCP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import ARP, Ether
from scapy.utils import rdpcap, wrpcap, wrpcapng

from nfreplay.errors import WireError
from nfreplay.proto import pcapfile
from nfreplay.proto.pcapfile import (
    ERROR_KINDS,
    MAX_CAPLEN,
    CaptureFile,
    Frame,
    PcapWriter,
    open_capture,
)
from nfreplay.proto.tcpip import parse

TS = 1_700_000_000.25


def ip_packet(payload: bytes = b"GET / HTTP/1.1\r\n\r\n", sport: int = 40000) -> bytes:
    return bytes(IP(src="62.135.200.17", dst="61.135.233.160") / TCP(sport=sport, dport=80,
                 flags="PA") / payload)  # fmt: skip


def eth(ip: bytes, etype: int = 0x0800, tags: Iterable[int] = ()) -> bytes:
    head = bytes.fromhex("020000000001020000000002")
    for tpid in tags:
        head += struct.pack("!HH", tpid, 7)
    return head + struct.pack("!H", etype) + ip


def pcap_bytes(
    frames: Iterable[bytes], linktype: int = 1, nanoseconds: bool = False, snaplen: int = 65535
) -> bytes:
    out = io.BytesIO()
    with PcapWriter(out, linktype, nanoseconds, snaplen) as w:
        for i, frame in enumerate(frames):
            w.write(TS + i, frame)
    return out.getvalue()


def read(data: bytes, name: str = "test.pcap") -> tuple[list[Frame], CaptureFile]:
    cap = CaptureFile(io.BytesIO(data), name)
    return list(cap), cap


def bad(cap: CaptureFile) -> dict[str, int]:
    """The nonzero error counters."""
    return {k: v for k, v in cap.errors.items() if v}


# --- pcapng building blocks -----------------------------------------------------------------------


def block(order: str, btype: int, body: bytes) -> bytes:
    body += bytes(-len(body) % 4)
    n = 12 + len(body)
    return struct.pack(order + "II", btype, n) + body + struct.pack(order + "I", n)


def option(order: str, code: int, value: bytes) -> bytes:
    return struct.pack(order + "HH", code, len(value)) + value + bytes(-len(value) % 4)


def shb(order: str = "<", major: int = 1) -> bytes:
    return block(order, 0x0A0D0D0A, struct.pack(order + "IHHq", 0x1A2B3C4D, major, 0, -1))


def idb(order: str = "<", linktype: int = 1, snaplen: int = 0, tsresol: int | None = None,
        tsoffset: int | None = None) -> bytes:  # fmt: skip
    opts = b""
    if tsresol is not None:
        opts += option(order, 9, bytes([tsresol]))
    if tsoffset is not None:
        opts += option(order, 14, struct.pack(order + "q", tsoffset))
    if opts:
        opts += struct.pack(order + "HH", 0, 0)
    return block(order, 1, struct.pack(order + "HHI", linktype, 0, snaplen) + opts)


def epb(order: str, iface: int, ts_units: int, data: bytes, origlen: int | None = None,
        caplen: int | None = None, options: bytes = b"") -> bytes:  # fmt: skip
    body = struct.pack(
        order + "IIIII", iface, ts_units >> 32, ts_units & 0xFFFFFFFF,
        len(data) if caplen is None else caplen, len(data) if origlen is None else origlen,
    )  # fmt: skip
    return block(order, 6, body + data + bytes(-len(data) % 4) + options)


def spb(order: str, data: bytes, origlen: int | None = None) -> bytes:
    size = len(data) if origlen is None else origlen
    return block(order, 3, struct.pack(order + "I", size) + data)


# --- pcap: formats and timestamps -----------------------------------------------------------------


@pytest.mark.parametrize("nanoseconds", [False, True])
def test_pcap_round_trip_through_writer_and_reader(nanoseconds: bool) -> None:
    ips = [ip_packet(bytes([i]) * i) for i in range(5)]
    out = io.BytesIO()
    with PcapWriter(out, nanoseconds=nanoseconds) as w:
        for i, ip in enumerate(ips):
            w.write(TS + i * 0.001001, eth(ip))
    frames, cap = read(out.getvalue())
    assert [f.ip for f in frames] == ips
    assert all(isinstance(f.ip, bytes) for f in frames)
    for i, f in enumerate(frames):
        assert f.ts == pytest.approx(TS + i * 0.001001, abs=1e-6)
        assert f.caplen == f.origlen == len(ips[i]) + 14
        assert not f.truncated
    assert cap.format == "pcap" and cap.nanoseconds is nanoseconds and cap.linktype == 1
    assert (cap.records, cap.frames) == (5, 5)
    assert bad(cap) == {} and sum(cap.skipped.values()) == 0
    parse(frames[0].ip)  # a real IPv4/TCP packet


def test_timestamp_fractions_are_exact_units() -> None:
    out = io.BytesIO()
    with PcapWriter(out, nanoseconds=True) as w:
        w.write(5.000000123, eth(ip_packet()))
        w.write(6.9999999999, eth(ip_packet()))  # rounds up into the next second
    raw = out.getvalue()
    assert struct.unpack_from("<II", raw, 24) == (5, 123)
    rec2 = 24 + 16 + len(eth(ip_packet()))
    assert struct.unpack_from("<II", raw, rec2) == (7, 0)
    frames, _ = read(raw)
    assert frames[0].ts == pytest.approx(5.000000123, abs=1e-12)


@pytest.mark.parametrize("nanoseconds", [False, True])
def test_big_endian_pcap(nanoseconds: bool) -> None:
    magic = 0xA1B23C4D if nanoseconds else 0xA1B2C3D4
    frame = eth(ip_packet())
    raw = struct.pack(">IHHiIII", magic, 2, 4, 0, 0, 65535, 1)
    raw += struct.pack(">IIII", 100, 500, len(frame), len(frame)) + frame
    assert raw[:4] == bytes.fromhex("a1b23c4d" if nanoseconds else "a1b2c3d4")
    frames, cap = read(raw)
    assert len(frames) == 1 and frames[0].ip == ip_packet()
    assert frames[0].ts == pytest.approx(100 + 500 * (1e-9 if nanoseconds else 1e-6), abs=1e-12)
    assert cap.nanoseconds is nanoseconds


def test_scapy_reads_what_we_write_and_we_read_what_scapy_writes(tmp_path: Path) -> None:
    pkts = [Ether() / IP(src="10.0.0.1", dst="10.0.0.2") / TCP(sport=1000 + i) / (b"x" * i)
            for i in range(20)]  # fmt: skip
    for i, p in enumerate(pkts):
        p.time = TS + i / 8
    wrpcap(str(tmp_path / "scapy.pcap"), pkts)
    with open_capture(tmp_path / "scapy.pcap") as cap:
        frames = list(cap)
    assert [f.ip for f in frames] == [bytes(p[IP]) for p in pkts]
    assert [f.ts for f in frames] == [TS + i / 8 for i in range(20)]

    with PcapWriter(tmp_path / "ours.pcap") as w:
        for p in pkts:
            w.write(float(p.time), bytes(p))
    back = rdpcap(str(tmp_path / "ours.pcap"))
    assert [bytes(p) for p in back] == [bytes(p) for p in pkts]
    assert [float(p.time) for p in back] == [TS + i / 8 for i in range(20)]


# --- link types -----------------------------------------------------------------------------------


IP4 = ip_packet()
IP6 = bytes(IPv6(src="2001:db8::1", dst="2001:db8::2") / TCP())


@pytest.mark.parametrize(
    ("linktype", "frame"),
    [
        (1, eth(IP4)),
        (1, eth(IP4, tags=[0x8100])),
        (1, eth(IP4, tags=[0x88A8, 0x8100])),
        (1, eth(IP4, tags=[0x88A8, 0x8100, 0x8100, 0x9100])),
        (113, bytes.fromhex("0000 0001 0006 020000000001 0000") + b"\x08\x00" + IP4),
        (276, b"\x08\x00" + bytes.fromhex("0000 00000002 0001 00 06 020000000001 0000") + IP4),
        (101, IP4),
        (228, IP4),
        (12, IP4),
        (14, IP4),
        (0, struct.pack("<I", 2) + IP4),  # written on a little-endian host
        (0, struct.pack(">I", 2) + IP4),  # written on a big-endian host
    ],
)  # fmt: skip
def test_link_headers_are_removed(linktype: int, frame: bytes) -> None:
    frames, cap = read(pcap_bytes([frame], linktype))
    assert [f.ip for f in frames] == [IP4]
    assert frames[0].caplen == len(frame)
    assert bad(cap) == {} and cap.linktype == linktype


@pytest.mark.parametrize(
    ("linktype", "frame"),
    [
        (1, eth(IP6, 0x86DD)),
        (1, eth(bytes(ARP()), 0x0806)),
        (1, eth(IP6, 0x86DD, tags=[0x8100])),
        (113, bytes(14) + b"\x86\xdd" + IP6),
        (276, b"\x86\xdd" + bytes(18) + IP6),
        (101, IP6),
        (0, struct.pack("<I", 30) + IP6),  # AF_INET6 on FreeBSD
        (0, struct.pack("<I", 0x0202) + IP4),  # neither byte order gives 2
    ],
)  # fmt: skip
def test_non_ipv4_frames_are_skipped_and_counted(linktype: int, frame: bytes) -> None:
    frames, cap = read(pcap_bytes([frame, frame], linktype))
    assert frames == []
    assert cap.skipped["non_ipv4"] == 2 and cap.records == 2
    assert bad(cap) == {}


def test_unsupported_pcap_linktype_is_refused_at_open() -> None:
    with pytest.raises(WireError) as exc:
        read(pcap_bytes([b"x" * 40], linktype=105), name="wifi.pcap")
    msg = str(exc.value)
    assert msg.startswith("wifi.pcap: link type 105 is not supported (supported: ")
    assert "1 ethernet" in msg and "276 linux-sll2" in msg and "\n" not in msg


def test_fcs_bits_of_the_linktype_field_are_ignored() -> None:
    raw = bytearray(pcap_bytes([eth(IP4) + b"\xde\xad\xbe\xef"]))
    struct.pack_into("<I", raw, 20, 1 | 1 << 26 | 2 << 28)  # "4 bytes of FCS"
    frames, _ = read(bytes(raw))
    assert [f.ip for f in frames] == [IP4]


def test_ethernet_padding_is_cut_to_tot_len_but_tso_length_zero_is_kept() -> None:
    small = bytes(IP(src="1.1.1.1", dst="2.2.2.2") / TCP(flags="A"))  # 40 bytes
    tso = bytearray(ip_packet(b"y" * 100))
    tso[2:4] = b"\0\0"  # how a TSO frame looks on the sending host
    frames, _ = read(pcap_bytes([eth(small) + bytes(6), eth(bytes(tso))]))
    assert frames[0].ip == small and frames[0].caplen == 60
    assert frames[1].ip == bytes(tso)


# --- robustness -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "hint"),
    [
        (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", "47 45 54 20 2f 20 48 54 ('GET / HT')"),
        (b"", "the file is empty"),
        (gzip.compress(b"x" * 100), "gzip-compressed"),
        (b"\x00\x01", "00 01"),
    ],
)
def test_not_a_capture_names_the_file_and_its_first_bytes(
    tmp_path: Path, content: bytes, hint: str
) -> None:
    path = tmp_path / "notes.txt"
    path.write_bytes(content)
    with pytest.raises(WireError) as exc:
        open_capture(path)
    msg = str(exc.value)
    assert msg.startswith(f"{path}: not a pcap or pcapng capture: ")
    assert hint in msg and "\n" not in msg


def test_open_errors() -> None:
    with pytest.raises(FileNotFoundError):
        open_capture("/nonexistent/nope.pcap")
    with pytest.raises(WireError, match="truncated pcap file header"):
        read(pcap_bytes([])[:20])
    raw = bytearray(pcap_bytes([]))
    raw[4] = 3
    with pytest.raises(WireError, match="unsupported pcap version 3.4"):
        read(bytes(raw))
    with pytest.raises(WireError, match="unsupported pcapng version 2"):
        read(shb("<", major=2))
    with pytest.raises(WireError, match="bad byte-order magic"):
        read(b"\x0a\x0d\x0d\x0a" + bytes(8) + bytes(16))


def test_open_capture_closes_the_file_when_it_refuses_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "x.pcap"
    path.write_bytes(pcap_bytes([b"x" * 40], linktype=105))
    opened: list[io.BufferedReader] = []
    real_open = open

    def spy(*args: object, **kw: object) -> io.BufferedReader:
        f = real_open(*args, **kw)  # type: ignore[call-overload]
        opened.append(f)
        return f  # type: ignore[no-any-return]

    monkeypatch.setattr(builtins, "open", spy)
    with pytest.raises(WireError):
        open_capture(path)
    monkeypatch.undo()
    assert opened and opened[0].closed


def test_empty_capture_yields_nothing() -> None:
    frames, cap = read(pcap_bytes([]))
    assert frames == [] and bad(cap) == {} and cap.records == 0


@pytest.mark.parametrize("cut", [1, 15, 16, 17, 40])
def test_record_truncated_by_end_of_file_is_counted_and_ends_iteration(cut: int) -> None:
    raw = pcap_bytes([eth(ip_packet())] * 3)
    last = len(raw) - (16 + len(eth(ip_packet())))
    frames, cap = read(raw[: last + cut])
    assert len(frames) == 2
    assert bad(cap) == {"truncated_record": 1}
    assert "truncated_record 1" in cap.summary()


def test_caplen_over_snaplen_is_a_bad_length_that_stops_iteration() -> None:
    raw = pcap_bytes([eth(ip_packet())] * 3, snaplen=100)
    frames, cap = read(raw)
    assert len(frames) == 3
    big = eth(ip_packet(b"z" * 200))
    rec = struct.pack("<IIII", 1, 0, len(big), len(big)) + big
    frames, cap = read(raw[:24] + rec + raw[24:])
    assert frames == [] and bad(cap) == {"bad_length": 1}


def test_absurd_caplen_stops_iteration_even_without_snaplen() -> None:
    raw = bytearray(pcap_bytes([eth(ip_packet())] * 2, snaplen=100))
    struct.pack_into("<I", raw, 16, 0)  # snaplen 0: some writers leave it unset
    good, cap = read(bytes(raw))
    assert len(good) == 2 and bad(cap) == {}
    struct.pack_into("<I", raw, 24 + 8, MAX_CAPLEN + 1)
    frames, cap = read(bytes(raw))
    assert frames == [] and bad(cap) == {"bad_length": 1}


def test_snaplen_cut_frames_are_yielded_flagged_and_counted() -> None:
    full = eth(ip_packet(b"q" * 500))
    out = io.BytesIO()
    with PcapWriter(out, snaplen=96) as w:
        w.write(TS, full[:96], origlen=len(full))
        w.write(TS, eth(ip_packet(b"ok")))
    frames, cap = read(out.getvalue())
    assert [f.truncated for f in frames] == [True, False]
    assert frames[0].ip == full[14:96] and (frames[0].caplen, frames[0].origlen) == (96, len(full))
    assert bad(cap) == {"snaplen_cut": 1}


@pytest.mark.parametrize(
    "frame",
    [
        b"\x02\x00\x00",  # shorter than an Ethernet header
        eth(b"", tags=[0x8100])[:15],  # a tag cut in the middle
        eth(IP4[:19]),  # not even an IPv4 header
        eth(b"\x60" + IP4[1:]),  # type IPv4, version 6
    ],
)
def test_frames_too_short_or_inconsistent_are_bad_frames_and_iteration_goes_on(
    frame: bytes,
) -> None:
    frames, cap = read(pcap_bytes([frame, eth(IP4)]))
    assert [f.ip for f in frames] == [IP4]
    assert bad(cap) == {"bad_frame": 1}


def test_summary_is_one_line() -> None:
    _, cap = read(pcap_bytes([eth(IP4), eth(IP6, 0x86DD)]), name="x.pcap")
    assert cap.summary() == (
        "x.pcap: pcap (us, link type 1), 2 records, 1 IPv4 frames; skipped: non_ipv4 1; no errors"
    )
    assert set(cap.errors) == set(ERROR_KINDS)


def test_a_capture_is_iterated_once() -> None:
    cap = CaptureFile(io.BytesIO(pcap_bytes([eth(IP4)])), "once")
    assert len(list(cap)) == 1
    with pytest.raises(ValueError, match="only once"):
        iter(cap)


# --- streaming ------------------------------------------------------------------------------------


class CountingStream(io.BytesIO):
    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.bytes_read = 0

    def read(self, n: int | None = -1) -> bytes:
        out = super().read(n)
        self.bytes_read += len(out)
        return out


def test_the_file_is_streamed_not_read_whole() -> None:
    frame = eth(ip_packet(b"s" * 1400))
    raw = pcap_bytes([frame] * 4000)  # about 5.7 MiB
    stream = CountingStream(raw)
    it = iter(CaptureFile(stream, "big"))
    next(it)
    assert stream.bytes_read <= 24 + pcapfile.CHUNK + 16 + len(frame)
    assert sum(1 for _ in it) == 3999
    assert stream.bytes_read == len(raw)


@pytest.mark.parametrize("chunk", [1, 7, 64, 1000])
def test_records_that_straddle_chunk_boundaries(
    monkeypatch: pytest.MonkeyPatch, chunk: int
) -> None:
    monkeypatch.setattr(pcapfile, "CHUNK", chunk)
    rng = random.Random(chunk)
    ips = [ip_packet(rng.randbytes(rng.randrange(0, 300)), sport=i) for i in range(200)]
    frames, cap = read(pcap_bytes(eth(ip) for ip in ips))
    assert [f.ip for f in frames] == ips and bad(cap) == {}
    ng = shb() + idb(tsresol=9) + b"".join(epb("<", 0, i, eth(ip)) for i, ip in enumerate(ips))
    frames, cap = read(ng)
    assert [f.ip for f in frames] == ips and bad(cap) == {}


def test_a_frame_does_not_keep_its_chunk_alive() -> None:
    frames, _ = read(pcap_bytes([eth(IP4)] * 3))
    # bytes, not a view: holding one frame must not pin a megabyte chunk.
    assert type(frames[0].ip) is bytes and len(frames[0].ip) == len(IP4)


# --- pcapng ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("order", ["<", ">"])
def test_pcapng_sections_interfaces_and_timestamp_resolutions(order: str) -> None:
    a, b, c, d = (ip_packet(sport=p) for p in (1, 2, 3, 4))
    raw = (
        shb(order)
        + idb(order, 1)  # iface 0: default microseconds
        + idb(order, 101, tsresol=9)  # iface 1: nanoseconds
        + idb(order, 113, tsresol=0x80 | 10, tsoffset=1000)  # iface 2: 2^-10 s, +1000 s
        + epb(order, 0, 1_700_000_000_250_000, eth(a))
        + epb(order, 1, 1_700_000_000_000_000_123, b)
        + epb(order, 2, 3 * 1024 + 512, bytes(14) + b"\x08\x00" + c)
        + spb(order, eth(d))  # no timestamp: the previous packet's
    )
    frames, cap = read(raw, "x.pcapng")
    assert [f.ip for f in frames] == [a, b, c, d]
    assert frames[0].ts == 1_700_000_000.25
    assert frames[1].ts == pytest.approx(1_700_000_000.000000123, abs=1e-6)
    assert frames[2].ts == 1003.5
    assert frames[3].ts == 1003.5
    assert cap.format == "pcapng" and cap.linktype == 1 and bad(cap) == {}
    assert cap.summary() == "x.pcapng: pcapng, 4 records, 4 IPv4 frames; no errors"


def test_pcapng_byte_order_may_change_with_a_new_section_which_resets_interfaces() -> None:
    raw = (
        shb("<") + idb("<", 1) + idb("<", 101) + epb("<", 1, 0, IP4)
        + shb(">") + idb(">", 101) + epb(">", 0, 0, IP4)
        + epb(">", 1, 0, IP4)  # interface 1 belonged to the previous section
        + epb(">", 0, 0, IP4)
    )  # fmt: skip
    frames, cap = read(raw)
    assert len(frames) == 3
    assert bad(cap) == {"bad_block": 1}


def test_pcapng_skips_metadata_custom_and_unknown_blocks() -> None:
    raw = (
        shb() + block("<", 4, b"\x01\x00\x08\x00" + b"\x0a\x00\x00\x01host" + bytes(4))  # NRB
        + idb() + block("<", 5, bytes(12))  # ISB
        + block("<", 0x0A, b"TLSK" + bytes(8))  # DSB
        + block("<", 0xBAD, struct.pack("<I", 32473) + b"custom")  # custom
        + block("<", 0x12345, b"who knows")  # unknown
        + epb("<", 0, 0, eth(IP4))
    )  # fmt: skip
    frames, cap = read(raw)
    assert [f.ip for f in frames] == [IP4] and bad(cap) == {} and cap.records == 1


def test_pcapng_unsupported_interfaces_are_counted_and_skipped() -> None:
    raw = shb() + idb("<", 105) + idb("<", 1) + epb("<", 0, 0, b"wifi" * 10)
    raw += epb("<", 1, 0, eth(IP4)) + epb("<", 0, 0, b"wifi" * 10)
    frames, cap = read(raw)
    assert [f.ip for f in frames] == [IP4]
    assert cap.skipped["unsupported_linktype"] == 2 and bad(cap) == {}


def test_pcapng_spb_is_cut_by_the_interface_snaplen_and_flagged() -> None:
    frame = eth(ip_packet(b"p" * 300))
    # 126 bytes in the SPB, padded to 128: only the snaplen tells where the data ends.
    raw = shb() + idb("<", 1, snaplen=126) + spb("<", frame[:126], origlen=len(frame))
    raw += epb("<", 0, 0, frame[:100], origlen=len(frame), options=option("<", 1, b"hi"))
    frames, cap = read(raw)
    assert [(f.caplen, f.origlen, f.truncated) for f in frames] == [
        (126, len(frame), True), (100, len(frame), True),
    ]  # fmt: skip
    assert frames[0].ip == frame[14:126] and frames[1].ip == frame[14:100]
    assert bad(cap) == {"snaplen_cut": 2}


def test_pcapng_spb_without_snaplen_is_cut_by_its_block() -> None:
    frame = eth(ip_packet(b"p" * 300))
    raw = shb() + idb("<", 1) + spb("<", frame[:100], origlen=len(frame)) + idb("<", 101)
    frames, _ = read(raw)
    # Not a byte of the next block: the SPB holds 100 bytes of the frame, whatever origlen says.
    assert [(f.ip, f.caplen, f.origlen) for f in frames] == [(frame[14:100], 100, len(frame))]


def test_pcapng_packet_before_any_interface_or_with_caplen_past_its_block() -> None:
    raw = shb() + epb("<", 0, 0, eth(IP4)) + spb("<", eth(IP4)) + idb()
    raw += epb("<", 0, 0, eth(IP4), caplen=5000) + epb("<", 0, 0, eth(IP4))
    frames, cap = read(raw)
    assert len(frames) == 1 and bad(cap) == {"bad_block": 3}


def test_pcapng_trailing_length_mismatch_stops_iteration() -> None:
    broken = bytearray(epb("<", 0, 0, eth(IP4)))
    broken[-4] ^= 4
    raw = shb() + idb() + epb("<", 0, 0, eth(IP4)) + bytes(broken) + epb("<", 0, 0, eth(IP4))
    frames, cap = read(raw)
    assert len(frames) == 1 and bad(cap) == {"bad_length": 1}


@pytest.mark.parametrize("blen", [8, 13, 1 << 30])
def test_pcapng_impossible_block_length_stops_iteration(blen: int) -> None:
    broken = bytearray(epb("<", 0, 0, eth(IP4)))
    struct.pack_into("<I", broken, 4, blen)
    frames, cap = read(shb() + idb() + bytes(broken))
    assert frames == [] and bad(cap) == {"bad_length": 1}


@pytest.mark.parametrize("cut", [1, 11, 12, 30])
def test_pcapng_block_truncated_by_end_of_file(cut: int) -> None:
    raw = shb() + idb() + epb("<", 0, 0, eth(IP4))
    frames, cap = read(raw + epb("<", 0, 0, eth(IP4))[:cut])
    assert len(frames) == 1 and bad(cap) == {"truncated_record": 1}


def test_pcapng_obsolete_packet_blocks_are_counted() -> None:
    frames, cap = read(shb() + idb() + block("<", 2, bytes(20) + eth(IP4)))
    assert frames == [] and cap.skipped["obsolete_packet_block"] == 1


def test_we_read_what_scapy_writes_as_pcapng(tmp_path: Path) -> None:
    pkts = [Ether() / IP(src="10.0.0.1", dst="10.0.0.2") / TCP(sport=i) / b"x" for i in range(5)]
    for i, p in enumerate(pkts):
        p.time = TS + i
    wrpcapng(str(tmp_path / "s.pcapng"), pkts)
    with open_capture(tmp_path / "s.pcapng") as cap:
        frames = list(cap)
    assert [f.ip for f in frames] == [bytes(p[IP]) for p in pkts]
    assert [f.ts for f in frames] == [TS + i for i in range(5)]


# --- fuzzing: never a traceback -------------------------------------------------------------------


def _mutations(raw: bytes, rng: random.Random, n: int) -> Iterable[bytes]:
    for _ in range(n):
        data = bytearray(raw)
        kind = rng.randrange(3)
        if kind == 0:
            for _ in range(rng.randrange(1, 8)):
                data[rng.randrange(len(data))] = rng.randrange(256)
        elif kind == 1:
            del data[rng.randrange(len(data)) :]
        else:
            at = rng.randrange(len(data))
            data[at:at] = rng.randbytes(rng.randrange(1, 40))
        yield bytes(data)


def test_corrupted_files_never_raise_past_open() -> None:
    rng = random.Random(7)
    ips = [ip_packet(rng.randbytes(rng.randrange(60)), sport=i) for i in range(12)]
    samples = [
        pcap_bytes(eth(ip, tags=[0x8100] * (i % 3)) for i, ip in enumerate(ips)),
        pcap_bytes(ips, linktype=101, nanoseconds=True),
        shb() + idb(tsresol=9) + idb("<", 113) + b"".join(
            epb("<", i % 2, i, eth(ip) if i % 2 == 0 else bytes(14) + b"\x08\x00" + ip)
            for i, ip in enumerate(ips)
        ) + spb("<", eth(ips[0])),
    ]  # fmt: skip
    for raw in samples:
        for data in _mutations(raw, rng, 400):
            try:
                cap = CaptureFile(io.BytesIO(data), "fuzz")
            except WireError:
                continue
            for frame in cap:
                assert frame.ip[0] >> 4 == 4 and len(frame.ip) >= 20
            cap.summary()


# --- writer misuse --------------------------------------------------------------------------------


def test_writer_rejects_misuse() -> None:
    w = PcapWriter(io.BytesIO(), snaplen=100)
    with pytest.raises(ValueError, match="exceed snaplen"):
        w.write(TS, bytes(101))
    with pytest.raises(ValueError, match="origlen"):
        w.write(TS, bytes(50), origlen=49)
    with pytest.raises(ValueError, match="timestamp"):
        w.write(-1.0, bytes(50))
    with pytest.raises(ValueError, match="link type"):
        PcapWriter(io.BytesIO(), linktype=70000)
