"""Hostile bytes (Hypothesis, bounded, deterministic): whatever the target sends, and however
the captures are mangled, the comparison and its three renderings never raise, the HTML never
carries the input unescaped and the table never carries control characters."""

from __future__ import annotations

import os
import re
import tempfile

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nfreplay.compare import http1, resp
from nfreplay.compare.comparison import compare_captures
from nfreplay.compare.diff import Options
from nfreplay.compare.exchanges import split
from nfreplay.compare.reassembly import Stream
from nfreplay.compare.report import render_html, render_json, render_table

from .recorder import Recording, http_get, http_ok

if not os.environ.get("HYPOTHESIS_STORAGE_DIRECTORY"):
    _STORAGE = tempfile.TemporaryDirectory(prefix="nfreplay-hypothesis-")
    os.environ["HYPOTHESIS_STORAGE_DIRECTORY"] = _STORAGE.name

FUZZ = settings(derandomize=True, database=None, deadline=None, max_examples=120,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])  # fmt: skip

EVIL = [b"<script>alert(1)</script>", b"\x1b[2J\x1b]0;owned\x07", b"\r\n\r\n", b"\x00\xff" * 8,
        b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffffffffff\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: 3\r\n\r\n\x1f\x8b\x08",
        b"*99999999\r\n", b"$-7\r\n", b"HTTP/1.1 999 \xff\xfe<b>\r\nX-\x1b: \x1b\r\n\r\n"]  # fmt: skip
hostile = st.one_of(st.binary(max_size=300), st.sampled_from(EVIL),
                    st.lists(st.sampled_from(EVIL), max_size=4).map(b"".join))  # fmt: skip


def check_renderings(report: object) -> None:
    page = render_html(report)  # type: ignore[arg-type]
    assert "<script" not in page and "\x1b" not in page
    assert re.search(r"<(?!/?(html|head|meta|title|style|body|h1|h2|h3|table|thead|tbody|tr|th|td|p|small|svg|rect|text|section|code|div|pre|b)\b|!DOCTYPE)", page) is None  # fmt: skip
    table = render_table(report)  # type: ignore[arg-type]
    assert not re.search(r"[\x00-\x08\x0b-\x1f\x7f]", table)
    render_json(report)  # type: ignore[arg-type]


@FUZZ
@given(st.lists(hostile, min_size=1, max_size=3), st.integers(1, 1500), st.booleans())
def test_any_target_reply_bytes(
    replies: list[bytes], mss: int, pipelined: bool
) -> None:
    rec = Recording()
    turns = [(http_get(f"/p{i}"), http_ok(b"fine"), r) for i, r in enumerate(replies)]
    rec.session(turns, mss=mss, pipelined=pipelined)
    report = compare_captures(
        rec.production, rec.sent, rec.replies, rec.lines, Options(), 3
    )
    check_renderings(report)


@FUZZ
@given(st.lists(hostile, min_size=1, max_size=3), st.sampled_from([80, 6379, 5432]))
def test_any_request_and_reply_bytes(data: list[bytes], port: int) -> None:
    rec = Recording()
    turns = [(d or b"x", d, d[::-1]) for d in data]
    rec.session(
        turns,
        server=("198.18.2.1", port),
        copies=[(("198.18.1.2", 40000), ("198.18.3.1", port))],
    )
    report = compare_captures(
        rec.production, rec.sent, rec.replies, rec.lines, Options(), 3
    )
    check_renderings(report)


@FUZZ
@given(st.data())
def test_mangled_packets(data: st.DataObject) -> None:
    rec = Recording()
    rec.session([(http_get("/a"), http_ok(b"a" * 100), http_ok(b"b" * 100))], mss=40)
    for name in ("production", "sent", "replies"):
        pkts = getattr(rec, name)
        for _ in range(data.draw(st.integers(0, 4))):
            i = data.draw(st.integers(0, len(pkts) - 1))
            ts, p = pkts[i]
            if not p:
                continue
            j = data.draw(st.integers(0, len(p) - 1))
            op = data.draw(st.sampled_from(["flip", "cut", "drop", "dup"]))
            if op == "flip":
                pkts[i] = (ts, p[:j] + bytes([p[j] ^ 0xFF]) + p[j + 1 :])
            elif op == "cut":
                pkts[i] = (ts, p[:j])
            elif op == "drop":
                del pkts[i]
            else:
                pkts.insert(data.draw(st.integers(0, len(pkts))), (ts, p))
    report = compare_captures(
        rec.production, rec.sent, rec.replies, rec.lines, Options(), 3
    )
    check_renderings(report)


@FUZZ
@given(
    st.binary(max_size=400),
    st.binary(max_size=400),
    st.sampled_from(["http", "redis", "raw"]),
)
def test_parsers_and_split_on_any_streams(
    client: bytes, server: bytes, protocol: str
) -> None:
    for fn in (lambda: http1.parse_request(client, 0),
               lambda: http1.parse_response(server, 0, "GET", True),
               lambda: resp.parse_reply(server, 0), lambda: resp.parse_command(client, 0)):  # fmt: skip
        fn()
    c, s = Stream(), Stream()
    c.add(1, 0x10, client, 1.0, 7)
    s.add(7, 0x10, server, 2.0, 1 + len(client) // 2)
    xs = split(c.assemble(), s.assemble(), protocol, 80)
    assert sum(len(x.request) for x in xs) <= len(client)
