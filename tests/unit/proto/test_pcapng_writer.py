"""PcapngWriter: what it writes is read back by our reader and by scapy, block by block as the
pcapng specification (and so Wireshark) lays it out."""

from __future__ import annotations

import io
import struct
from pathlib import Path

import pytest
from scapy.layers.inet import IP, TCP
from scapy.utils import rdpcap

from nfreplay.proto.pcapfile import LINKTYPE_RAW, CaptureFile, PcapngWriter


def ip_packet(payload: bytes, sport: int = 40000) -> bytes:
    pkt = IP(src="198.18.1.2", dst="198.18.2.1") / TCP(
        sport=sport, dport=80, flags="PA"
    )
    return bytes(pkt / payload)


def blocks(data: bytes) -> list[tuple[int, bytes]]:
    """(type, body) of each block, checking both length fields and the 32-bit alignment."""
    out = []
    pos = 0
    while pos < len(data):
        btype, blen = struct.unpack_from("<II", data, pos)
        assert blen % 4 == 0 and blen >= 12
        assert struct.unpack_from("<I", data, pos + blen - 4)[0] == blen
        out.append((btype, data[pos + 8 : pos + blen - 4]))
        pos += blen
    assert pos == len(data)
    return out


def written(packets: list[tuple[int, bytes]], **kw: object) -> bytes:
    out = io.BytesIO()
    with PcapngWriter(out, **kw) as w:  # type: ignore[arg-type]
        for ts_ns, ip in packets:
            w.write_ns(ts_ns, ip)
    return out.getvalue()


def test_block_layout_section_interface_and_packets() -> None:
    ips = [ip_packet(b"x" * n) for n in (0, 1, 2, 3, 4)]  # every padding length
    data = written([(1_700_000_000_123_456_789 + i, ip) for i, ip in enumerate(ips)],
                   if_name="production")  # fmt: skip
    (shb_t, shb), (idb_t, idb), *epbs = blocks(data)
    assert shb_t == 0x0A0D0D0A
    assert struct.unpack_from("<IHHq", shb) == (0x1A2B3C4D, 1, 0, -1)
    assert idb_t == 1
    linktype, reserved, snaplen = struct.unpack_from("<HHI", idb)
    assert (linktype, reserved, snaplen) == (LINKTYPE_RAW, 0, 262144)
    opts, p = {}, 8
    while True:
        code, length = struct.unpack_from("<HH", idb, p)
        if code == 0:
            assert length == 0 and p + 4 == len(idb)
            break
        opts[code] = idb[p + 4 : p + 4 + length]
        pad = idb[p + 4 + length : p + 4 + length + (-length % 4)]
        assert pad == bytes(len(pad))
        p += 4 + length + (-length % 4)
    assert opts == {2: b"production", 9: b"\x09"}
    assert [t for t, _ in epbs] == [6] * 5
    for i, (_, body) in enumerate(epbs):
        iface, hi, lo, caplen, origlen = struct.unpack_from("<IIIII", body)
        assert iface == 0 and (hi << 32 | lo) == 1_700_000_000_123_456_789 + i
        assert caplen == origlen == len(ips[i])
        assert body[20 : 20 + caplen] == ips[i]
        assert body[20 + caplen :] == bytes(-caplen % 4)  # zero padding, no options


def test_our_reader_reads_it_back_with_nanosecond_timestamps() -> None:
    ips = [ip_packet(bytes([i]) * i, sport=40000 + i) for i in range(6)]
    data = written([(5_000_000_123 + 7 * i, ip) for i, ip in enumerate(ips)])
    cap = CaptureFile(io.BytesIO(data), "t.pcapng")
    frames = list(cap)
    assert [f.ip for f in frames] == ips
    for i, f in enumerate(frames):
        # if_tsresol=9 honoured: 7 ns steps survive (at 5 s a double resolves ~1e-15 s)
        assert f.ts == pytest.approx(5.000000123 + 7e-9 * i, abs=1e-13)
    assert cap.linktype == LINKTYPE_RAW and cap.format == "pcapng"
    assert not any(cap.errors.values())


def test_float_timestamps_round_to_the_nanosecond() -> None:
    out = io.BytesIO()
    w = PcapngWriter(out)
    w.write(1_700_000_000.25, ip_packet(b"a"))
    w.write(6.9999999999, ip_packet(b"b"))
    _, _, (_, e1), (_, e2) = blocks(out.getvalue())
    hi, lo = struct.unpack_from("<II", e1, 4)
    assert hi << 32 | lo == 1_700_000_000_250_000_000
    hi, lo = struct.unpack_from("<II", e2, 4)
    assert hi << 32 | lo == 7_000_000_000


def test_scapy_reads_it(tmp_path: Path) -> None:
    ips = [ip_packet(b"GET / HTTP/1.1\r\n\r\n"), ip_packet(b"abc", sport=40001)]
    path = tmp_path / "x.pcapng"
    path.write_bytes(
        written(
            [(1_700_000_000_000_000_001, ips[0]), (1_700_000_001_5 * 10**8, ips[1])]
        )
    )
    pkts = rdpcap(str(path))
    assert [bytes(p) for p in pkts] == ips
    assert float(pkts[1].time) == pytest.approx(1_700_000_001.5, abs=1e-6)


def test_a_file_cut_anywhere_gives_the_complete_packets_and_counts_the_rest() -> None:
    ips = [ip_packet(b"y" * n) for n in (10, 11, 12)]
    data = written([(10**18 + i, ip) for i, ip in enumerate(ips)])
    header = sum(len(b) + 12 for _, b in blocks(data)[:2])
    sizes = [len(b) + 12 for _, b in blocks(data)[2:]]
    for cut in range(header, len(data) + 1):
        cap = CaptureFile(io.BytesIO(data[:cut]), "cut.pcapng")
        frames = list(cap)
        whole = sum(1 for k in range(1, 4) if header + sum(sizes[:k]) <= cut)
        assert [f.ip for f in frames] == ips[:whole]
        boundary = cut == header + sum(sizes[:whole])
        assert cap.errors["truncated_record"] == (0 if boundary else 1)


def test_misuse_is_refused() -> None:
    w = PcapngWriter(io.BytesIO(), snaplen=100)
    with pytest.raises(ValueError):
        w.write(-1.0, ip_packet(b""))
    with pytest.raises(ValueError):
        w.write_ns(2**64, ip_packet(b""))
    with pytest.raises(ValueError):
        w.write_ns(0, bytes(101))
    with pytest.raises(ValueError):
        w.write_ns(0, bytes(40), origlen=39)
    with pytest.raises(ValueError):
        PcapngWriter(io.BytesIO(), linktype=70000)
