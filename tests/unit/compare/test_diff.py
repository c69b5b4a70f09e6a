"""diff: JSON paths, structural JSON comparison, content codings, hostile bodies."""

from __future__ import annotations

import gzip
import json
import zlib

import pytest

from nfreplay.compare import http1
from nfreplay.compare.diff import MAX_BODY, Options, compare, compile_json_path
from nfreplay.compare.exchanges import Exchange


def exchange(raw: bytes, method: str = "GET") -> Exchange:
    res = http1.parse_response(raw, 0, method, at_eof=True)
    return Exchange(
        "http", "GET /", b"GET / HTTP/1.1\r\n\r\n", raw, res, 0.0, 0.001, True, False
    )


def response(body: bytes, headers: str = "") -> bytes:
    return (
        f"HTTP/1.1 200 OK\r\n{headers}Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body


def where(a: object, b: object, *paths: str) -> str:
    d = compare(exchange(response(json.dumps(a).encode())),
                exchange(response(json.dumps(b).encode())), Options.build(json_paths=paths))  # fmt: skip
    return "" if d.identical else d.where


def test_json_paths_compile() -> None:
    assert compile_json_path("$.meta.time") == (("key", "meta"), ("key", "time"))
    assert compile_json_path("$.items[*].id") == (
        ("key", "items"),
        ("any", None),
        ("key", "id"),
    )
    assert compile_json_path("$['a b'][3]") == (("key", "a b"), ("index", 3))
    assert compile_json_path("$..id") == (("deep", None), ("key", "id"))
    for bad in ("meta", "$.", "$[x]", "$..", "$.a[", "$ a"):
        with pytest.raises(ValueError):
            compile_json_path(bad)


def test_structural_json_comparison() -> None:
    assert (
        where({"a": 1, "b": [1, 2]}, {"b": [1, 2], "a": 1.0}) == ""
    )  # order, 1 == 1.0
    assert where({"a": True}, {"a": 1}) == "$.a"  # true is not 1
    assert where({"a": [1, 2]}, {"a": [1, 2, 3]}) == "$.a[2]"
    assert where({"a": {"x": 1}}, {"a": {"y": 1}}) == "$.a.x"
    assert where({"a b": 1}, {"a b": 2}) == '$["a b"]'
    assert (
        where({"a": [{"id": 1, "v": 1}]}, {"a": [{"id": 2, "v": 2}]}, "$.a[*].id")
        == "$.a[0].v"
    )
    assert (
        where({"a": [{"id": 1, "v": 1}]}, {"a": [{"id": 2, "v": 1}]}, "$.a[*].id") == ""
    )
    assert where({"x": {"y": {"id": 1}}}, {"x": {"y": {"id": 2}}}, "$..id") == ""
    assert where({"x": {"y": {"id": 1}}}, {"x": {"y": {"id": 2}}}, "$.x.*.id") == ""
    assert where([1, 2], [1, 3], "$[0]") == "$[1]"


def test_deflate_both_flavours_and_unknown_codings() -> None:
    body = b"deflated body " * 10
    raw = zlib.compressobj(wbits=-15)
    raw_deflate = raw.compress(body) + raw.flush()
    a = exchange(response(zlib.compress(body), "Content-Encoding: deflate\r\n"))
    b = exchange(response(raw_deflate, "Content-Encoding: deflate\r\n"))
    assert compare(a, b, Options()).identical
    br1 = exchange(response(b"\x01\x02", "Content-Encoding: br\r\n"))
    br2 = exchange(response(b"\x01\x03", "Content-Encoding: br\r\n"))
    assert compare(br1, br2, Options()).where == "byte 1"  # compared as received


def test_a_decompression_bomb_is_compared_as_received() -> None:
    bomb = gzip.compress(bytes(MAX_BODY + 10))
    a = exchange(response(bomb, "Content-Encoding: gzip\r\n"))
    b = exchange(response(bomb[:-1] + b"\x00", "Content-Encoding: gzip\r\n"))
    d = compare(a, b, Options())
    assert not d.identical and d.where.startswith("byte ")
    assert len(d.production) < 10_000


def test_deep_json_does_not_crash() -> None:
    deep = b"[" * 100_000 + b"]" * 100_000
    d = compare(
        exchange(response(deep)), exchange(response(deep[:-1] + b"}")), Options()
    )
    assert not d.identical and d.kind == "body"


def test_incomplete_target_response_is_a_difference() -> None:
    full = response(b"0123456789")
    a = exchange(full)
    cut = http1.parse_response(full[:-3], 0, "GET", at_eof=False)
    assert cut is not None and not cut.complete
    b = Exchange("http", "GET /", b"", full[:-3], cut, 0.0, 0.0, False, False)
    d = compare(a, b, Options())
    assert not d.identical and d.kind == "body"


def test_default_ignored_headers_and_framing_headers() -> None:
    a = exchange(
        b"HTTP/1.1 200 OK\r\nDate: x\r\nAge: 1\r\nETag: a\r\nContent-Length: 2\r\n\r\nok"
    )
    b = exchange(b"HTTP/1.1 200 OK\r\nDATE: y\r\nage: 9\r\nEtag: b\r\nTransfer-Encoding: chunked"
                 b"\r\n\r\n2\r\nok\r\n0\r\n\r\n")  # fmt: skip
    assert compare(a, b, Options()).identical
    assert not compare(a, b, Options(use_default_headers=False)).identical
