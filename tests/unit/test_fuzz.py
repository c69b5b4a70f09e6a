"""Fuzzing (Hypothesis) of every decoder that reads bytes or text from outside nfreplay.

What is fuzzed, and the contract checked for *every* input:

* Control channel (``nfreplay.proto.channel``), both directions: ``MessageDecoder`` (the assist
  reading the online side's messages), ``FrameDecoder`` (the online side reading the assist's
  record frames, then ``tcpip.parse`` on each record) and ``make_record`` (the assist turning a
  queued reply into a record). Any bytes give messages/records or ``WireError``, exactly when an
  independent model of the wire format says so; after a ``WireError`` a decoder refuses more input
  with ``ValueError``; splitting the stream anywhere gives the same messages.
* IPv4/TCP (``nfreplay.proto.tcpip``): ``parse`` gives a ``Segment`` exactly when an independent
  reading of the headers says it should, else ``WireError``; ``options``/``syn_options`` give a
  result or ``WireError``; ``find_option_offset`` and ``timestamps`` never raise and agree with
  ``options``; ``rewrite``, ``set_tsval``/``set_tsecr``, ``nop_option`` and ``trim_front`` keep
  both checksums right for any header, option layout and field values.
* Captures (``nfreplay.proto.pcapfile``): ``CaptureFile`` raises a one-line ``WireError`` at
  construction, or iterates without raising and counts every record it does not yield; the
  result does not depend on the read chunk size.
* Configuration (``nfreplay.config.load``), for every role: a ``Config``, or a ``ConfigError``
  whose message is one line naming the key or the file.

Inputs are random bytes and, since they reach far deeper, mutations (bit flips, interesting
values in length fields, insertions, deletions, truncation) of valid messages, packets,
captures and of ``etc/nfreplay.toml``. Sizes are bounded; the runs are deterministic
(``derandomize``) and keep no example database.
"""

from __future__ import annotations

import io
import json
import math
import os
import re
import struct
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nfreplay import config
from nfreplay.config import ROLES, Config, load
from nfreplay.errors import ConfigError, WireError
from nfreplay.proto import pcapfile
from nfreplay.proto.channel import (
    COMB_MAX, MAX_TCP_HEADER_IN_RECORD, RECORD_SIZE, TYPE_CLIENT_ADD, TYPE_CLIENT_DEL, VERSION,
    ClientMessage, FrameDecoder, MessageDecoder, encode_client_add, encode_frame, make_record,
)  # fmt: skip
from nfreplay.proto.checksum import fill_checksums, verify
from nfreplay.proto.pcapfile import ERROR_KINDS, MAX_CAPLEN, SUPPORTED_LINKTYPES, CaptureFile
from nfreplay.proto.tcpip import (
    OPT_TS, URG, Segment, build, complete, find_option_offset, nop_option, options, parse,
    rewrite, set_tsecr, set_tsval, syn_options, timestamps, trim_front,
)  # fmt: skip

from .proto.packets import add_ip_options

# Even with database=None Hypothesis caches things (constants found in the source, Unicode
# tables) in ./.hypothesis; keep them out of the work tree. The variable is read on first use.
if not os.environ.get("HYPOTHESIS_STORAGE_DIRECTORY"):
    _STORAGE = tempfile.TemporaryDirectory(prefix="nfreplay-hypothesis-")  # removed at exit
    os.environ["HYPOTHESIS_STORAGE_DIRECTORY"] = _STORAGE.name

FUZZ = settings(
    derandomize=True,
    database=None,
    deadline=None,
    max_examples=300,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

u8 = st.integers(0, 0xFF)
u16 = st.integers(0, 0xFFFF)
u32 = st.integers(0, 0xFFFFFFFF)


def be(data: bytes) -> int:
    return int.from_bytes(data, "big")


# --- mutation -------------------------------------------------------------------------------

# Values that sit on the edges of the length, count and type fields these formats have.
_BYTES = (0x00, 0x01, 0x02, 0x04, 0x06, 0x08, 0x0A, 0x14, 0x40, 0x45, 0x4F, 0x60, 0x7F, 0x80, 0xFF)
_WORDS = (0, 1, 2, 3, 4, 11, 12, 16, 17, 19, 20, 28, 40, 44, 60, 64, 0x0800, 0x7FFF, 0x8000, 0xFFFF)
_DWORDS = (0, 1, 12, 16, 28, 32, 0x0A0D0D0A, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF,
           MAX_CAPLEN, MAX_CAPLEN + 1, 1 << 24)  # fmt: skip


@st.composite
def mutated(draw: st.DrawFn, valid: st.SearchStrategy[bytes], max_ops: int = 6) -> bytes:
    """``valid`` input with 1..max_ops random edits."""
    buf = bytearray(draw(valid))
    for _ in range(draw(st.integers(1, max_ops))):
        op = draw(st.sampled_from(("flip", "byte", "word", "dword", "insert", "delete",
                                   "truncate", "copy")))  # fmt: skip
        size = len(buf)
        if op == "insert" or not size:
            at = draw(st.integers(0, size))
            buf[at:at] = draw(st.binary(min_size=1, max_size=16))
            continue
        # Half the edits land in the first 48 bytes, where the headers and lengths are.
        pos = draw(st.integers(0, size - 1) | st.integers(0, min(size - 1, 47)))
        if op == "flip":
            buf[pos] ^= 1 << draw(st.integers(0, 7))
        elif op == "byte":
            buf[pos] = draw(st.sampled_from(_BYTES) | u8)
        elif op in ("word", "dword"):
            width, values = (2, _WORDS) if op == "word" else (4, _DWORDS)
            order = draw(st.sampled_from(("big", "little")))
            buf[pos : pos + width] = draw(st.sampled_from(values)).to_bytes(width, order)
        elif op == "delete":
            del buf[pos : pos + draw(st.integers(1, 16))]
        elif op == "truncate":
            del buf[pos:]
        else:  # a slice repeated elsewhere: a duplicated message, record, option or block
            end = draw(st.integers(pos + 1, min(size, pos + 128)))
            at = draw(st.integers(0, size))
            buf[at:at] = buf[pos:end]
    return bytes(buf)


def fuzz_bytes(valid: st.SearchStrategy[bytes], max_random: int) -> st.SearchStrategy[bytes]:
    """Random bytes, valid inputs, and mutated valid inputs."""
    return st.one_of(st.binary(max_size=max_random), valid, mutated(valid))


@st.composite
def split_streams(draw: st.DrawFn, streams: st.SearchStrategy[bytes]) -> tuple[bytes, list[Any]]:
    """A stream and the same bytes cut at arbitrary points (empty pieces included), each piece
    as bytes, bytearray or memoryview, as ``recv`` callers may hand them over."""
    data = draw(streams)
    cuts = sorted(draw(st.lists(st.integers(0, len(data)), max_size=12)))
    bounds = [0, *cuts, len(data)]
    wrap = draw(st.lists(st.sampled_from((bytes, bytearray, memoryview)), min_size=len(bounds),
                         max_size=len(bounds)))  # fmt: skip
    return data, [w(data[a:b]) for w, a, b in zip(wrap, bounds, bounds[1:])]


# --- valid inputs ---------------------------------------------------------------------------

_OPTION_PIECES = st.one_of(
    st.just(b"\x01"),  # NOP
    st.just(b"\x00"),  # EOL
    u16.map(lambda v: b"\x02\x04" + v.to_bytes(2, "big")),  # MSS
    u8.map(lambda v: bytes([3, 3, v])),  # window scale
    st.just(b"\x04\x02"),  # SACK permitted
    st.tuples(u32, u32).map(lambda t: b"\x08\x0a" + struct.pack("!II", *t)),  # timestamps
    st.lists(u32, min_size=2, max_size=6).map(
        lambda e: bytes([5, 2 + 4 * len(e)]) + b"".join(x.to_bytes(4, "big") for x in e)),
    st.tuples(u8, st.binary(max_size=10)).map(lambda t: bytes([t[0], len(t[1]) + 2]) + t[1]),
    st.binary(min_size=1, max_size=4),  # anything, malformed lengths included
)  # fmt: skip
_TS_PIECE = st.tuples(u32, u32).map(lambda t: b"\x08\x0a" + struct.pack("!II", *t))


@st.composite
def tcp_packets(draw: st.DrawFn, max_payload: int = 48, with_ts: bool = False) -> bytes:
    """A complete IPv4/TCP packet with right checksums and random fields, TCP options (valid or
    not), urgent pointer and IPv4 options. ``with_ts``: a timestamp option within the first 40
    option bytes (possibly after a malformed option that hides it)."""
    opts = draw(st.binary(max_size=40) | st.lists(_OPTION_PIECES, max_size=8).map(b"".join))
    if with_ts:
        opts = opts[: draw(st.integers(0, 30))] + draw(_TS_PIECE) + opts
    pkt = build(
        draw(u32), draw(u32), draw(u16), draw(u16), draw(u32), draw(u32), draw(u8),
        window=draw(u16), options=opts[:40], payload=draw(st.binary(max_size=max_payload)),
        ip_id=draw(u16), ttl=draw(u8), df=draw(st.booleans()),
    )  # fmt: skip
    pkt[38:40] = draw(u16).to_bytes(2, "big")  # urgent pointer (build leaves it 0)
    fill_checksums(pkt)
    ip_options = draw(st.sampled_from((0, 0, 0, 4, 12, 40)))
    return bytes(add_ip_options(pkt, ip_options) if ip_options else pkt)


@st.composite
def header_edits(draw: st.DrawFn, packets: st.SearchStrategy[bytes]) -> bytes:
    """A packet with one IPv4/TCP header field set to a value parsers must check, then maybe
    cut short: a mutator that knows where the fields are."""
    buf = bytearray(draw(packets))
    ihl = (buf[0] & 0x0F) * 4
    doff = (buf[ihl + 12] >> 4) * 4
    field = draw(st.sampled_from(("vihl", "tot_len", "frag", "proto", "doff", "last_option")))
    if field == "vihl":
        buf[0] = draw(st.sampled_from((0x44, 0x46, 0x4F, 0x40, 0x55, 0x65)) | u8)
    elif field == "tot_len":
        buf[2:4] = draw(st.integers(0, len(buf) + 8)).to_bytes(2, "big")
    elif field == "frag":  # MF, offsets, and DF (not a fragment)
        buf[6:8] = draw(st.sampled_from((0x2000, 0x6000, 0x0001, 0x1FFF, 0x4000))).to_bytes(2, "big")
    elif field == "proto":
        buf[9] = draw(st.sampled_from((17, 1, 0, 255)))
    elif field == "doff":
        buf[ihl + 12] = draw(u8)
    else:  # an option kind in the header's last byte: no room for its length byte
        buf[ihl + doff - 1] = draw(st.integers(2, 255))
    if draw(st.booleans()):
        del buf[draw(st.integers(0, len(buf))) :]
    return bytes(buf)


@st.composite
def cut_in_options(draw: st.DrawFn, packets: st.SearchStrategy[bytes]) -> bytes:
    """A packet cut in its TCP options, as a record or a snaplen cuts it: often just after an
    option's kind byte, or inside its data."""
    pkt = draw(packets)
    tcp = (pkt[0] & 0x0F) * 4
    end = tcp + (pkt[tcp + 12] >> 4) * 4
    cuts = list(range(tcp + 20, end + 1))
    pos = tcp + 20
    while pos < end and pkt[pos] > 1 and pos + 1 < end and pkt[pos + 1] >= 2:
        cuts += [pos + 1, pos + 2]
        pos += pkt[pos + 1]
    return pkt[: draw(st.sampled_from(cuts))]


packet_bytes = st.one_of(
    fuzz_bytes(tcp_packets(), max_random=100),
    header_edits(tcp_packets()),
    cut_in_options(tcp_packets()),
)


@st.composite
def client_streams(draw: st.DrawFn) -> bytes:
    """The online→assist stream: a version message, then 14-byte messages."""
    version = draw(st.sampled_from((VERSION, 0, 5, 7, 0xFFFF)))
    out = [struct.pack("!IHHIH", 0, 0, version, 0, 0)]
    for _ in range(draw(st.integers(0, 8))):
        clt_ip, clt_port, tgt_ip, tgt_port = draw(st.tuples(u32, u16, u32, u16))
        kind = draw(st.sampled_from((TYPE_CLIENT_ADD, TYPE_CLIENT_ADD, TYPE_CLIENT_DEL, 0, 0xFFFF)))
        if kind == TYPE_CLIENT_ADD:
            out.append(encode_client_add(clt_ip, clt_port, tgt_ip, tgt_port))
        else:
            out.append(struct.pack("!IHHIH", clt_ip, clt_port, kind, tgt_ip, tgt_port))
    return b"".join(out)


@st.composite
def frame_streams(draw: st.DrawFn) -> bytes:
    """The assist→online stream: frames of 1..16 records, made from real replies or random."""
    records = draw(st.lists(
        tcp_packets(max_payload=16).map(make_record)
        | st.binary(min_size=RECORD_SIZE, max_size=RECORD_SIZE),
        max_size=24))  # fmt: skip
    out = []
    while records:
        n = draw(st.integers(1, COMB_MAX))
        out.append(encode_frame(records[:n]))
        records = records[n:]
    return b"".join(out)


# --- control channel ------------------------------------------------------------------------


def feed_all(decoder: MessageDecoder | FrameDecoder, chunks: Sequence[Any]) -> tuple[list[Any], bool]:
    """Feed ``chunks`` in order: (everything returned, whether a WireError ended it). After a
    WireError the decoder must refuse more input with ValueError."""
    out: list[Any] = []
    for chunk in chunks:
        try:
            out += decoder.feed(chunk)
        except WireError:
            with pytest.raises(ValueError):
                decoder.feed(b"")
            return out, True
    return out, False


def message_model(data: bytes) -> tuple[list[ClientMessage] | None, int | None]:
    """(messages, peer version) the online→assist stream ``data`` holds; messages None if the
    assist must refuse it (the first 8 bytes are not a version message)."""
    if len(data) < 8:
        return [], None
    if any(data[:6]):
        return None, None
    body = data[14:]
    msgs = [
        ClientMessage(be(body[i : i + 4]), be(body[i + 4 : i + 6]), be(body[i + 6 : i + 8]),
                      be(body[i + 8 : i + 12]), be(body[i + 12 : i + 14]))
        for i in range(0, len(body) - 13, 14)
    ]  # fmt: skip
    return msgs, be(data[6:8])


@FUZZ
@given(split_streams(fuzz_bytes(client_streams(), max_random=64)))
def test_message_decoder(stream: tuple[bytes, list[Any]]) -> None:
    data, chunks = stream
    want, version = message_model(data)
    whole, parts = MessageDecoder(), MessageDecoder()
    got_whole, failed_whole = feed_all(whole, [data])
    got_parts, failed_parts = feed_all(parts, chunks)
    assert failed_whole == failed_parts == (want is None)
    if want is None:
        assert got_whole == got_parts == []  # refused before any message
        return
    assert got_whole == got_parts == want
    for dec in whole, parts:
        assert dec.version == version
        assert dec.version_mismatch == (version is not None and version != VERSION)
        assert dec.greeted == (len(data) >= 14)
        assert dec.buffered == (len(data) if len(data) < 14 else (len(data) - 14) % 14)


def frame_model(data: bytes) -> tuple[list[bytes], bool]:
    """(records of the complete frames before any bad count, whether a bad count follows)."""
    records: list[bytes] = []
    pos = 0
    while len(data) - pos >= 2:
        count = be(data[pos : pos + 2])
        if not 1 <= count <= COMB_MAX:
            return records, True
        end = pos + 2 + count * RECORD_SIZE
        if end > len(data):
            break
        records += [data[i : i + RECORD_SIZE] for i in range(pos + 2, end, RECORD_SIZE)]
        pos = end
    return records, False


@FUZZ
@given(split_streams(fuzz_bytes(frame_streams(), max_random=200)))
def test_frame_decoder(stream: tuple[bytes, list[Any]]) -> None:
    data, chunks = stream
    want, bad = frame_model(data)
    got_whole, failed_whole = feed_all(FrameDecoder(), [data])
    got_parts, failed_parts = feed_all(FrameDecoder(), chunks)
    assert failed_whole == failed_parts == bad
    if bad:
        # The connection is dropped; records handed over before the bad count were right.
        assert got_whole == []
        assert got_parts == want[: len(got_parts)]
    else:
        assert got_whole == got_parts == want
    for record in got_parts:
        assert type(record) is bytes and len(record) == RECORD_SIZE
        check_segment(record, 0)  # what the online side does with each record


@settings(FUZZ, max_examples=500)
@given(packet_bytes | header_edits(tcp_packets()))
def test_make_record(pkt: bytes) -> None:
    hdr = header_model(pkt, 0)
    valid = hdr is not None and len(pkt) >= max(40, hdr["ihl"] + hdr["doff"])
    try:
        rec = make_record(pkt)
    except WireError:
        assert not valid, "make_record refused a valid reply"
        return
    assert valid and hdr is not None, "make_record accepted a bad reply"
    assert type(rec) is bytes and len(rec) == RECORD_SIZE
    seg = parse(rec)  # the online side must be able to read every record the assist sends
    orig = parse(pkt)
    for name in ("src", "dst", "sport", "dport", "seq", "ack", "flags", "window", "doff",
                 "payload_len", "ip_id", "ttl"):  # fmt: skip
        assert getattr(seg, name) == getattr(orig, name), name
    assert seg.ihl == 20 and seg.tot_len == orig.tot_len - (orig.ihl - 20)
    tcp_len = min(orig.doff, MAX_TCP_HEADER_IN_RECORD)
    assert rec[20 : 20 + tcp_len] == pkt[orig.ihl : orig.ihl + tcp_len]
    assert not any(rec[20 + tcp_len :])


# --- IPv4/TCP -------------------------------------------------------------------------------

_SEG_FIELDS = ("ihl", "tot_len", "ip_id", "ttl", "src", "dst", "sport", "dport", "seq", "ack",
               "doff", "flags", "window")  # fmt: skip


def header_model(buf: Any, off: int) -> dict[str, int] | None:
    """The fields ``parse(buf, off)`` must return, read byte by byte; None if it must raise."""
    b = bytes(buf[off:])
    if len(b) < 20:
        return None
    ihl = (b[0] & 0x0F) * 4
    if b[0] >> 4 != 4 or ihl < 20 or b[9] != 6 or be(b[6:8]) & 0x3FFF or len(b) < ihl + 20:
        return None
    t = b[ihl:]
    doff = (t[12] >> 4) * 4
    tot_len = be(b[2:4])
    if doff < 20 or tot_len < ihl + doff:
        return None
    return {"ihl": ihl, "tot_len": tot_len, "ip_id": be(b[4:6]), "ttl": b[8],
            "src": be(b[12:16]), "dst": be(b[16:20]), "sport": be(t[0:2]), "dport": be(t[2:4]),
            "seq": be(t[4:8]), "ack": be(t[8:12]), "doff": doff, "flags": t[13],
            "window": be(t[14:16])}  # fmt: skip


def check_segment(buf: Any, off: int) -> Segment | None:
    """``parse`` and every option reader on ``buf[off:]``, against ``header_model``."""
    want = header_model(buf, off)
    try:
        seg = parse(buf, off)
    except WireError as exc:
        assert want is None, f"parse refused a valid header: {exc}"
        return None
    assert want is not None, "parse accepted a bad header"
    assert {name: getattr(seg, name) for name in _SEG_FIELDS} == want
    assert seg.buf is buf and seg.off == off and seg.tcp_off == off + seg.ihl
    assert seg.payload_off == off + seg.ihl + seg.doff
    assert seg.payload_len == seg.tot_len - seg.ihl - seg.doff >= 0
    assert complete(seg) == (len(buf) - off >= seg.tot_len)
    check_options(seg)
    return seg


def check_options(seg: Segment) -> None:
    buf, tcp = seg.buf, seg.off + seg.ihl
    limit = min(tcp + seg.doff, len(buf))
    found = {}
    for kind in (2, 3, 4, 5, 8, 254, 99):  # never raises, and never points outside the header
        pos = find_option_offset(buf, tcp, seg.doff, kind)
        assert pos == -1 or (tcp + 20 <= pos and buf[pos] == kind and pos + buf[pos + 1] <= limit)
        found[kind] = pos
    ts = timestamps(seg)  # never raises
    try:
        opts = options(seg)
    except WireError:
        with pytest.raises(WireError):
            syn_options(seg)
        return
    assert all(kind > 1 for kind, _ in opts)  # NOP and EOL are not options
    first: dict[int, bytes] = {}
    for kind, data in opts:
        first.setdefault(kind, data)
    # The strict and the lenient walk agree when the option list is well formed.
    for kind, pos in found.items():
        if kind in first:
            assert pos >= 0 and bytes(buf[pos + 2 : pos + buf[pos + 1]]) == first[kind]
        else:
            assert pos == -1
    tsopt = first.get(OPT_TS)
    assert ts == (None if tsopt is None or len(tsopt) != 8 else (be(tsopt[:4]), be(tsopt[4:])))
    mss, wscale, sack, syn_ts = syn_options(seg)
    assert (mss is not None) == any(k == 2 and len(d) == 2 for k, d in opts)
    assert mss is None or (2, mss.to_bytes(2, "big")) in opts
    assert (wscale is not None) == any(k == 3 and len(d) == 1 for k, d in opts)
    assert wscale is None or (3, bytes([wscale])) in opts
    assert sack == ((4, b"") in opts)
    assert (syn_ts is not None) == any(k == 8 and len(d) == 8 for k, d in opts)
    assert syn_ts is None or (8, struct.pack("!II", *syn_ts)) in opts


@st.composite
def buffers_at(draw: st.DrawFn, packets: st.SearchStrategy[bytes]) -> tuple[Any, int]:
    """A packet behind 0..16 bytes of link header, as bytes, bytearray or memoryview."""
    prefix = draw(st.binary(max_size=16))
    kind = draw(st.sampled_from((bytes, bytearray, memoryview)))
    return kind(prefix + draw(packets)), len(prefix)


@settings(FUZZ, max_examples=500)
@given(buffers_at(st.one_of(
    packet_bytes,
    header_edits(tcp_packets()),
    cut_in_options(tcp_packets()),
    st.binary(min_size=RECORD_SIZE, max_size=RECORD_SIZE),  # a record from a hostile assistant
    mutated(tcp_packets(max_payload=16).map(make_record)),
)))  # fmt: skip
def test_parse_and_options(at: tuple[Any, int]) -> None:
    buf, off = at
    check_segment(buf, off)


_REWRITABLE = st.fixed_dictionaries({}, optional={
    "src": u32, "dst": u32, "sport": u16, "dport": u16, "seq": u32, "ack": u32, "window": u16,
})  # fmt: skip


def rewritten_bytes(off: int, ihl: int) -> set[int]:
    """Offsets ``rewrite`` may change: IP checksum and addresses, TCP ports, seq, ack, window and
    checksum."""
    tcp = off + ihl
    return {*range(off + 10, off + 20), *range(tcp, tcp + 12), *range(tcp + 14, tcp + 18)}


@FUZZ
@given(tcp_packets(), st.binary(max_size=8), _REWRITABLE, _REWRITABLE)
def test_rewrite_keeps_checksums(
    pkt: bytes, prefix: bytes, first: dict[str, int], second: dict[str, int]
) -> None:
    assert verify(pkt)
    seg = parse(pkt)  # parsed from the original: the rewritten copy sits at another offset
    buf = bytearray(prefix + pkt)
    off = len(prefix)
    before = bytes(buf)
    may_change = rewritten_bytes(off, seg.ihl)
    expect = {name: getattr(seg, name) for name in ("src", "dst", "sport", "dport", "seq",
                                                     "ack", "window")}  # fmt: skip
    # The second rewrite uses the now stale seg; the old values come from the packet itself.
    for fields in first, second:
        rewrite(buf, off, seg, **fields)
        expect.update(fields)
        assert verify(buf, off)
        now = parse(buf, off)
        assert {name: getattr(now, name) for name in expect} == expect
        assert len(buf) == len(before)
        assert all(buf[i] == before[i] for i in range(len(buf)) if i not in may_change)


@FUZZ
@given(tcp_packets(with_ts=True), st.binary(max_size=8), u32, u32)
def test_set_timestamps_keeps_checksums(pkt: bytes, prefix: bytes, tsval: int, tsecr: int) -> None:
    buf = bytearray(prefix + pkt)
    off = len(prefix)
    seg = parse(buf, off)
    ts_off = find_option_offset(buf, seg.tcp_off, seg.doff, OPT_TS)
    if ts_off < 0 or buf[ts_off + 1] != 10:
        assert timestamps(seg) is None  # hidden behind a malformed option, or a bad length
        return
    old = timestamps(seg)
    assert old is not None
    set_tsval(buf, ts_off, tsval, off)
    assert verify(buf, off) and timestamps(parse(buf, off)) == (tsval, old[1])
    set_tsecr(buf, ts_off, tsecr, off)
    assert verify(buf, off) and timestamps(parse(buf, off)) == (tsval, tsecr)


def option_spans(buf: Any, tcp: int, doff: int) -> list[tuple[int, int]]:
    """(offset, length) of each option the lenient walk of ``find_option_offset`` passes."""
    out = []
    pos, end = tcp + 20, min(tcp + doff, len(buf))
    while pos < end:
        if buf[pos] == 1:
            pos += 1
            continue
        if buf[pos] == 0 or pos + 1 >= end or buf[pos + 1] < 2 or pos + buf[pos + 1] > end:
            break
        out.append((pos, buf[pos + 1]))
        pos += buf[pos + 1]
    return out


@FUZZ
@given(tcp_packets(), st.binary(max_size=8), st.data())
def test_nop_option_keeps_checksum(pkt: bytes, prefix: bytes, data: st.DataObject) -> None:
    buf = bytearray(prefix + pkt)
    off = len(prefix)
    seg = parse(buf, off)
    spans = option_spans(buf, seg.tcp_off, seg.doff)
    for pos, _ in spans:  # find_option_offset gives the first option of a kind
        first = next(p for p, _ in spans if buf[p] == buf[pos])
        assert find_option_offset(buf, seg.tcp_off, seg.doff, buf[pos]) == first
    if not spans:
        return
    pos, length = data.draw(st.sampled_from(spans), label="option")
    before = bytes(buf)
    nop_option(buf, pos, off)
    assert verify(buf, off)
    assert buf[pos : pos + length] == b"\x01" * length
    csum = seg.tcp_off + 16
    assert all(buf[i] == before[i] for i in range(len(buf))
               if not (pos <= i < pos + length or csum <= i < csum + 2))  # fmt: skip
    assert option_spans(buf, seg.tcp_off, seg.doff) == [s for s in spans if s[0] != pos]


@FUZZ
@given(tcp_packets(max_payload=64), st.binary(max_size=8), st.data())
def test_trim_front(pkt: bytes, prefix: bytes, data: st.DataObject) -> None:
    buf = prefix + pkt
    off = len(prefix)
    seg = parse(buf, off)
    n = data.draw(st.integers(-2, seg.payload_len + 2), label="nbytes")
    if not 0 <= n <= seg.payload_len:
        with pytest.raises(ValueError):
            trim_front(buf, off, seg, n)
        return
    out = trim_front(buf, off, seg, n)
    assert verify(out)
    new = parse(out)
    assert new.seq == (seg.seq + n) % 2**32 and new.tot_len == seg.tot_len - n == len(out)
    assert out[new.payload_off :] == buf[seg.payload_off + n : off + seg.tot_len]
    urp = be(pkt[seg.ihl + 18 : seg.ihl + 20])
    new_urp = be(out[new.ihl + 18 : new.ihl + 20])
    if seg.flags & URG and urp > n:
        assert new.flags == seg.flags and new_urp == urp - n
    elif seg.flags & URG:
        assert new.flags == seg.flags & ~URG and new_urp == 0
    else:
        assert new.flags == seg.flags and new_urp == urp


# --- captures -------------------------------------------------------------------------------

_NG_SHB, _NG_IDB, _NG_OPB, _NG_SPB, _NG_NRB, _NG_EPB = 0x0A0D0D0A, 1, 2, 3, 4, 6


@st.composite
def link_frames(draw: st.DrawFn, linktype: int) -> tuple[bytes, int, bool]:
    """A frame of ``linktype``, the length of its link header, and whether it holds IPv4. An
    IPv4 packet may be followed by padding, and its tot_len may be 0 (TSO) or wrong."""
    ipv4 = draw(st.sampled_from((True, True, True, False)))
    if ipv4:
        body = bytearray(draw(tcp_packets(max_payload=24)) + draw(st.binary(max_size=6)))
        if draw(st.integers(0, 4)) == 0:
            body[2:4] = draw(st.sampled_from((0, 1, 19, 20, 21, 0xFFFF))).to_bytes(2, "big")
        body = bytes(body)
    else:
        body = b"\x60" + draw(st.binary(max_size=40))
    if linktype == pcapfile.LINKTYPE_ETHERNET:
        tags = draw(st.lists(st.sampled_from((0x8100, 0x88A8, 0x9100)), max_size=2))
        head = bytes(12) + b"".join(struct.pack("!HH", t, 7) for t in tags)
        head += struct.pack("!H", 0x0800 if ipv4 else 0x86DD)
    elif linktype == pcapfile.LINKTYPE_LINUX_SLL:
        head = bytes(14) + struct.pack("!H", 0x0800 if ipv4 else 0x0806)
    elif linktype == pcapfile.LINKTYPE_LINUX_SLL2:
        head = struct.pack("!H", 0x0800 if ipv4 else 0x86DD) + bytes(18)
    elif linktype == pcapfile.LINKTYPE_NULL:
        head = struct.pack(draw(st.sampled_from("<>")) + "I", 2 if ipv4 else 24)
    else:  # raw IP: the version nibble tells
        head = b""
    return head + body, len(head), ipv4


def expected_ip(frame: bytes, head_len: int, ipv4: bool, caplen: int) -> list[bytes]:
    """What the reader yields for ``frame`` captured with ``caplen`` bytes: the IPv4 packet as
    far as captured, cut to a tot_len of 20 or more; nothing if less than an IPv4 header was
    captured."""
    ip = frame[head_len:caplen]
    if not ipv4 or len(ip) < 20:
        return []
    tot_len = be(ip[2:4])
    return [ip[:tot_len] if 20 <= tot_len < len(ip) else ip]


@st.composite
def pcap_files(draw: st.DrawFn) -> tuple[bytes, list[bytes]]:
    """A pcap file (either byte order, us or ns) and the IPv4 packets it holds, in order."""
    order = draw(st.sampled_from("<>"))
    ns = draw(st.booleans())
    linktype = draw(st.sampled_from(sorted(SUPPORTED_LINKTYPES)))
    snaplen = draw(st.sampled_from((0, 65535, MAX_CAPLEN, 100, 60)))
    fcs = draw(st.sampled_from((0, 0x10000000)))  # upper bits of the link type: FCS info
    out = [struct.pack(order + "IHHiIII", 0xA1B23C4D if ns else 0xA1B2C3D4, 2, 4, 0, 0, snaplen,
                       linktype | fcs)]  # fmt: skip
    want: list[bytes] = []
    for _ in range(draw(st.integers(0, 5))):
        frame, head_len, ipv4 = draw(link_frames(linktype))
        caplen = min(len(frame), snaplen or MAX_CAPLEN, draw(st.sampled_from((MAX_CAPLEN, 30))))
        frac = draw(st.integers(0, 10**9 - 1 if ns else 10**6 - 1))
        out.append(struct.pack(order + "IIII", draw(u32), frac, caplen, len(frame)))
        out.append(frame[:caplen])
        want += expected_ip(frame, head_len, ipv4, caplen)
    return b"".join(out), want


def _ng_block(order: str, btype: int, body: bytes) -> bytes:
    body += bytes(-len(body) % 4)
    return struct.pack(order + "II", btype, len(body) + 12) + body + struct.pack(order + "I",
                                                                                len(body) + 12)


def _ng_options(order: str, opts: Sequence[tuple[int, bytes]], end: bool = True) -> bytes:
    out = b"".join(struct.pack(order + "HH", c, len(v)) + v + bytes(-len(v) % 4) for c, v in opts)
    return out + struct.pack(order + "HH", 0, 0) if end else out


@st.composite
def pcapng_files(draw: st.DrawFn, hostile: bool = False) -> tuple[bytes, list[bytes]]:
    """A pcapng file of 1-2 sections (each in its own byte order) with interfaces of supported
    and unsupported link types, EPB/SPB/obsolete packet blocks and blocks to skip, and the IPv4
    packets it holds, in order.

    ``hostile``: block contents may be wrong while the framing stays right (packets on undefined
    interfaces or before any, captured lengths past the block, short blocks, interface options
    running past their block, a later section with a bad byte-order magic); the packet list is
    then meaningless."""
    out: list[bytes] = []
    want: list[bytes] = []
    for section in range(draw(st.integers(1, 2))):
        order = draw(st.sampled_from("<>"))
        bom = 0x1A2B3C4D if not (hostile and section) else draw(st.sampled_from((0x1A2B3C4D, 7)))
        out.append(_ng_block(order, _NG_SHB, struct.pack(order + "IHHq", bom, 1, 0, -1)))
        ifaces: list[tuple[int, int]] = []
        for _ in range(draw(st.integers(0 if hostile else 1, 2))):
            linktype = draw(st.sampled_from(sorted(SUPPORTED_LINKTYPES)) | st.just(147))
            snaplen = draw(st.sampled_from((0, 65535, 100, 60)))
            opts = draw(st.lists(st.one_of(
                st.sampled_from((0, 3, 6, 9, 0x80 | 20)).map(lambda v: (9, bytes([v]))),
                st.integers(-(2**40), 2**40).map(lambda v, o=order: (14, struct.pack(o + "q", v))),
                st.binary(max_size=9).map(lambda v: (2, v)),  # if_name
            ), max_size=3))  # fmt: skip
            overrun = hostile and draw(st.booleans())
            body = struct.pack(order + "HHI", linktype, 0, snaplen)
            body += _ng_options(order, opts, end=not overrun)
            if overrun:  # an option longer than what is left of the block
                code = draw(st.sampled_from((2, 9, 14)))  # name, tsresol, tsoffset
                body += struct.pack(order + "HH", code, draw(st.integers(1, 64)))
            elif hostile:
                body = body[: draw(st.integers(0, len(body)) | st.just(len(body)))]
            out.append(_ng_block(order, _NG_IDB, body))
            ifaces.append((linktype, snaplen))
        for _ in range(draw(st.integers(0, 5))):
            kind = draw(st.sampled_from(("epb", "epb", "spb", "other")))
            if kind == "other" or (hostile and draw(st.integers(0, 4)) == 0):
                btype = draw(st.sampled_from((_NG_OPB, _NG_NRB, 5, 0x40000BAD)))
                if hostile and kind != "other":  # a packet block too short for its fields
                    btype = _NG_EPB if kind == "epb" else _NG_SPB
                out.append(_ng_block(order, btype, draw(st.binary(max_size=24))))
                continue
            if hostile:
                iface = draw(st.integers(0, len(ifaces) + 1))
            else:
                iface = draw(st.integers(0, len(ifaces) - 1)) if kind == "epb" else 0
            linktype, snaplen = ifaces[iface] if iface < len(ifaces) else (1, 0)
            frame, head_len, ipv4 = draw(link_frames(linktype))
            if kind == "epb":
                caplen = draw(st.integers(0, len(frame) + 8 * hostile) | st.just(len(frame)))
                ts = draw(st.integers(0, 2**64 - 1))
                body = struct.pack(order + "IIIII", iface, ts >> 32, ts & 0xFFFFFFFF, caplen,
                                   len(frame)) + frame[:caplen]  # fmt: skip
                out.append(_ng_block(order, _NG_EPB, body))
            else:
                caplen = min(len(frame), snaplen) if snaplen else len(frame)
                out.append(_ng_block(order, _NG_SPB, struct.pack(order + "I", len(frame)) + frame))
            if linktype in SUPPORTED_LINKTYPES:
                want += expected_ip(frame, head_len, ipv4, caplen)
    return b"".join(out), want


captures = st.one_of(pcap_files(), pcapng_files())
_SHB_LE = _ng_block("<", _NG_SHB, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1))
capture_bytes = st.one_of(
    fuzz_bytes(captures.map(lambda c: c[0]), max_random=64),
    fuzz_bytes(pcapng_files(hostile=True).map(lambda c: c[0]), max_random=0),
    # A file header (right, of another version, or cut short) and then anything.
    st.tuples(
        st.sampled_from((
            struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1),
            struct.pack(">IHHiIII", 0xA1B23C4D, 2, 4, 0, 0, 0, 113),
            struct.pack("<IHHiIII", 0xA1B2C3D4, 3, 0, 0, 0, 65535, 1),
            struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 147),
            struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 276)[:20],
            _SHB_LE, _SHB_LE[:11], _SHB_LE[:13], _SHB_LE[:12] + b"\x02\x00", b"\x1f\x8b\x08",
        )),
        st.binary(max_size=200),
    ).map(lambda t: t[0] + t[1]),
)  # fmt: skip


class ShortReads:
    """A binary stream whose reads (after the 24-byte file header) return at most the next of
    ``sizes`` bytes, cycling: what a pipe or socket hands a reader."""

    def __init__(self, data: bytes, sizes: Sequence[int]) -> None:
        self._data = data
        self._pos = 0
        self._sizes = list(sizes)
        self._calls = 0

    def read(self, n: int = -1) -> bytes:
        if self._calls:
            n = min(n, self._sizes[self._calls % len(self._sizes)])
        self._calls += 1
        out = self._data[self._pos : self._pos + n]
        self._pos += len(out)
        return out

    def close(self) -> None:
        pass


def read_capture(data: bytes, stream: Any = None) -> tuple[Any, ...]:
    """Read ``data`` as a capture and check the reader's contract; returns what it produced."""
    name = "fuzz.pcap"
    try:
        cap = CaptureFile(stream or io.BytesIO(data), name)
    except WireError as exc:
        message = str(exc)
        assert message.startswith(f"{name}: ") and len(message.splitlines()) == 1, message
        return ("refused", message)
    frames = list(cap)  # never raises
    with pytest.raises(ValueError):
        iter(cap)  # read once
    errors, skipped = cap.errors, cap.skipped
    assert tuple(errors) == ERROR_KINDS
    assert all(n >= 0 for n in (*errors.values(), *skipped.values()))
    assert cap.frames == len(frames)
    assert errors["truncated_record"] + errors["bad_length"] <= 1  # each ends the iteration
    assert errors["snaplen_cut"] == sum(frame.truncated for frame in frames)
    accounted = cap.frames + sum(skipped.values()) + errors["bad_frame"]
    if cap.format == "pcap":
        assert cap.records == accounted and errors["bad_block"] == 0
    else:
        assert accounted <= cap.records <= accounted + errors["bad_block"]
    for frame in frames:
        ip = frame.ip
        assert type(ip) is bytes and len(ip) >= 20 and ip[0] >> 4 == 4
        assert len(ip) <= frame.caplen and frame.truncated == (frame.caplen < frame.origlen)
        tot_len = be(ip[2:4])
        assert tot_len < 20 or len(ip) <= tot_len  # cut to tot_len, never past it
        assert math.isfinite(frame.ts)
    summary = cap.summary()
    assert summary.startswith(f"{name}: ") and len(summary.splitlines()) == 1
    return (frames, dict(errors), dict(skipped), cap.records, cap.format, cap.linktype,
            cap.snaplen)  # fmt: skip


@FUZZ
@given(captures)
def test_capture_valid_files(capture: tuple[bytes, list[bytes]]) -> None:
    data, want = capture
    result = read_capture(data)
    assert [frame.ip for frame in result[0]] == want
    errors = result[1]
    assert errors["truncated_record"] == errors["bad_length"] == errors["bad_block"] == 0


@FUZZ
@given(capture_bytes)
def test_capture_any_bytes(data: bytes) -> None:
    read_capture(data)


@FUZZ
@given(capture_bytes, st.integers(1, 97), st.lists(st.integers(1, 64), min_size=1, max_size=6))
def test_capture_any_chunking(data: bytes, chunk: int, sizes: list[int]) -> None:
    whole = read_capture(data)
    with mock.patch.object(pcapfile, "CHUNK", chunk):
        assert read_capture(data, ShortReads(data, sizes)) == whole


# --- configuration --------------------------------------------------------------------------

_EXAMPLE = (Path(__file__).resolve().parents[2] / "etc" / "nfreplay.toml").read_text()
_KEYS = config.keys()
_SECTIONS = sorted({k.split(".")[0] for k in _KEYS})
_NAMES = sorted({k.split(".", 1)[1] for k in _KEYS})

def _names_its_subject(message: str, path: str) -> bool:
    """The message starts with the file (file and TOML errors) or the dotted key it is about."""
    if message.startswith(f"{path}:") or message.endswith((": unknown section", ": unknown key")):
        return True
    head = message.split(": ", 1)[0]
    return head in _SECTIONS or any(head == k or head.startswith((f"{k}.", f"{k}[")) for k in _KEYS)


def check_load(
    path: str, overrides: dict[str, Any] | None = None, roles: Sequence[str] = ROLES
) -> None:
    """``load`` for each role: a Config, or a ConfigError with a one-line message naming its
    subject. Any other exception fails."""
    for role in roles:
        try:
            cfg = load(path, overrides or {}, role=role)
        except Exception as exc:
            if not isinstance(exc, ConfigError):
                raise
            message = str(exc)
            assert len(message.splitlines()) == 1, f"not one line: {message!r}"
            assert _names_its_subject(message, path), message
        else:
            assert isinstance(cfg, Config) and cfg.source == path


def toml_string(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)  # JSON's escapes are TOML's


_DOMAIN_STRINGS = (
    "80", " 80 ", "0", "65535", "65536", "198.18.0.3:80", "198.18.0.3", ":80", "198.18.0.3:",
    "198.18.1.0/24", "198.18.1.1/24", "10.0.0.0/33", "10.0.0.0/255.0.0.0", "any", "eth0",
    "auto", "nft", "debug", "/run/nfreplay", "run/x", "8080-198.18.0.3:8080", "1-2-3",
    "198.18.4.10-20", "assistant", "colocated", "1e400", "nan", "true", "", "9" * 5000,
)  # fmt: skip
_bare_keys = st.sampled_from(_NAMES) | st.from_regex(r"[A-Za-z0-9_-]{1,8}", fullmatch=True)
_toml_scalars = st.one_of(
    st.integers(-(2**70), 2**70).map(str),
    st.sampled_from((0, -1, 1, 65535, 65536, 2**63 - 1, 10**400)).map(str),
    st.floats().map(repr),  # inf and nan included: TOML spells them the same
    st.booleans().map(lambda b: "true" if b else "false"),
    (st.sampled_from(_DOMAIN_STRINGS) | st.text(max_size=20)).map(toml_string),
    st.sampled_from(("1979-05-27T07:32:00Z", "1979-05-27", "07:32:00", "0x1F", "0o17", "1_000",
                     "-inf", "+1.5e3", "'literal'", '"""multi\nline"""', "9" * 4400,
                     "[" * 600 + "]" * 600)),
)  # fmt: skip
_toml_values = st.one_of(
    st.recursive(
        _toml_scalars,
        lambda inner: st.one_of(
            st.lists(inner, max_size=4).map(lambda xs: "[" + ", ".join(xs) + "]"),
            st.dictionaries(_bare_keys, inner, max_size=3).map(
                lambda d: "{" + ", ".join(f"{k} = {v}" for k, v in d.items()) + "}"),
        ),
        max_leaves=6,
    ),
    # Plausible values, and lists of them, to get past the type checks.
    st.sampled_from(_DOMAIN_STRINGS).map(toml_string),
    st.lists(st.sampled_from(_DOMAIN_STRINGS).map(toml_string), max_size=3).map(
        lambda xs: "[" + ", ".join(xs) + "]"),
)  # fmt: skip
_toml_keys = st.one_of(
    _bare_keys,
    st.sampled_from(_KEYS),  # dotted: online.service = ... at the top level
    st.text(max_size=8).map(toml_string),
)
_toml_lines = st.one_of(
    st.sampled_from([*_SECTIONS, "nosuch", "online.x", "[online]"]).map(lambda s: f"[{s}]"),
    st.tuples(_toml_keys, _toml_values).map(lambda kv: f"{kv[0]} = {kv[1]}"),
    st.text(max_size=30),
)
_toml_docs = st.lists(_toml_lines, max_size=12).map(lambda lines: "\n".join(lines) + "\n")


@st.composite
def example_mutations(draw: st.DrawFn) -> str:
    """``etc/nfreplay.toml`` with a few lines changed: values replaced, lines dropped,
    duplicated or inserted."""
    lines = _EXAMPLE.splitlines()
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(("value", "value", "value", "drop", "dup", "insert")))
        assignments = [i for i, line in enumerate(lines) if re.match(r"[a-z_]+ = ", line)]
        if op == "value" and assignments:
            i = draw(st.sampled_from(assignments))
            lines[i] = lines[i].split(" = ", 1)[0] + " = " + draw(_toml_values)
            continue
        i = draw(st.integers(0, len(lines) - 1))
        if op == "drop":
            del lines[i]
        elif op == "dup":
            lines.insert(i, lines[i])
        else:
            lines.insert(i, draw(_toml_lines))
    return "\n".join(lines) + "\n"


def check_load_bytes(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / "nfreplay.toml")
        Path(path).write_bytes(data)
        check_load(path)


@FUZZ
@given(st.one_of(st.binary(max_size=300), _toml_docs.map(str.encode)))
def test_load_any_file(data: bytes) -> None:
    check_load_bytes(data)


@settings(FUZZ, max_examples=200)
@given(st.one_of(example_mutations().map(str.encode), mutated(st.just(_EXAMPLE.encode()))))
def test_load_mutated_example(data: bytes) -> None:
    check_load_bytes(data)


# A command-line value: what argparse hands over (argv that is not UTF-8 arrives with
# surrogates), or a native value.
_flag_values = st.one_of(
    st.none(),
    st.sampled_from(_DOMAIN_STRINGS),
    st.text(max_size=24),
    st.binary(max_size=12).map(lambda b: b.decode("utf-8", "surrogateescape")),
    st.lists(st.sampled_from(_DOMAIN_STRINGS) | st.text(max_size=12), max_size=3),
    st.integers(-(2**70), 2**70),
    st.booleans(),
    st.floats(),
)


@settings(FUZZ, max_examples=200)
@given(st.dictionaries(st.sampled_from([*_KEYS, "online.nosuch", "nosuch.key", "online", ""]),
                       _flag_values, max_size=4))  # fmt: skip
def test_load_any_flags(overrides: dict[str, Any]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / "nfreplay.toml")
        Path(path).write_text(_EXAMPLE)
        check_load(path, overrides)


# Every key with every odd value, from the file and as a flag: random sampling would meet most
# (key, value) pairs only by luck, and each key has its own parser.
_ODD_VALUES = (*(toml_string(v) for v in _DOMAIN_STRINGS), "0", "-1", "65536", "1" + "0" * 400,
               "-0.5", "inf", "nan", "true", "[]", '["198.18.0.4", "198.18.0.4"]', "[1]", "{}",
               "1979-05-27", "[" * 600 + "]" * 600)  # fmt: skip
_ODD_FLAGS = (*_DOMAIN_STRINGS, "\udcff", "eth\udc800", "a\nb", "\x00")  # argv: surrogateescape
_ODD_KEYS = ('"a\\nb"', '"a\\u2028b"', '"\\u001b[31m"', '"a.b"', "'x:y'")


def test_load_every_key_with_odd_values(tmp_path: Path) -> None:
    path = tmp_path / "nfreplay.toml"
    example = tmp_path / "example.toml"
    example.write_text(_EXAMPLE)
    for key in _KEYS:
        section, name = key.split(".")
        for value in _ODD_VALUES:
            path.write_text(f"[{section}]\n{name} = {value}\n")
            check_load(str(path), roles=("status",))  # the key is checked before the role
        for flag in _ODD_FLAGS:
            check_load(str(example), {key: flag}, roles=(section if section in ROLES else "status",))
    for odd in _ODD_KEYS:  # unknown keys and sections are named in the message
        for text in (f"{odd} = 1\n", f"[online]\n{odd} = 1\n", f"[{odd}]\n"):
            path.write_text(text)
            check_load(str(path), roles=("status",))


@pytest.mark.parametrize(("text", "overrides"), [
    pytest.param("[online]\npercent = 1" + "0" * 400 + "\n", {}, id="huge-int-for-a-number"),
    pytest.param("[online]\nmtu = " + "9" * 4400 + "\n", {}, id="int-over-4300-digits"),
    pytest.param(_EXAMPLE, {"online.service": "9" * 4400}, id="port-over-4300-digits"),
    pytest.param(_EXAMPLE, {"online.mtu": "9" * 4400}, id="flag-int-over-4300-digits"),
    pytest.param("x = " + "[" * 600 + "]" * 600 + "\n", {}, id="deep-nesting"),
    pytest.param(_EXAMPLE, {"online.interface": "\udcff"}, id="interface-not-utf8"),
    pytest.param('[online]\n"a\\nb" = 1\n', {}, id="line-break-in-unknown-key"),
])  # fmt: skip
def test_loader_inputs_found_by_fuzzing_are_one_line_errors(
    tmp_path: Path, text: str, overrides: dict[str, Any]
) -> None:
    path = tmp_path / "nfreplay.toml"
    path.write_text(text)
    for role in ROLES:
        with pytest.raises(ConfigError) as info:
            load(str(path), overrides, role=role)
        assert len(str(info.value).splitlines()) == 1, str(info.value)
