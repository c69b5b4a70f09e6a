"""End to end on HTTP/1.x: recordings built packet by packet, compared, the report checked."""

from __future__ import annotations

import gzip
import json
from typing import Any

import pytest

from nfreplay.compare.comparison import compare_captures
from nfreplay.compare.diff import Options
from nfreplay.compare.report import to_dict

from .recorder import CLIENT, PROD_MS, T0, TARGET_MS, Recording, http_get, http_ok


def run(
    rec: Recording, options: Options | None = None, examples: int = 3
) -> dict[str, Any]:
    report = compare_captures(rec.production, rec.sent, rec.replies, rec.lines,
                              options or Options(), examples)  # fmt: skip
    return to_dict(report)


def ep(d: dict[str, Any], name: str) -> dict[str, Any]:
    [e] = [e for e in d["endpoints"] if e["endpoint"] == name]
    return e


SAME = b"same body for everyone\n"


def turns(paths: list[str]) -> list[tuple[bytes, bytes, bytes]]:
    """/diff gets another body from the target; every other path the same bytes, with
    another Date header."""
    out = []
    for p in paths:
        body = f"body of {p}\n".encode()
        tbody = b"NEW " + body if p.startswith("/diff") else body
        out.append((http_get(p), http_ok(body),
                    http_ok(tbody, date="Wed, 15 Nov 2023 01:02:03 GMT")))  # fmt: skip
    return out


def assert_only_diff_flagged(d: dict[str, Any], n_diff: int, n_same: int) -> None:
    diff = ep(d, "GET /diff")
    assert (diff["exchanges"], diff["different"], diff["identical"]) == (
        n_diff,
        n_diff,
        0,
    )
    assert (
        diff["examples"][0]["kind"] == "body"
        and diff["examples"][0]["where"] == "byte 0"
    )
    same = [e for e in d["endpoints"] if e["endpoint"] != "GET /diff"]
    assert sum(e["exchanges"] for e in same) == n_same
    for e in same:
        assert (
            e["different"] == 0
            and e["unpaired"] == 0
            and e["identical"] == e["exchanges"]
        )
    assert d["totals"]["gaps"] == 0 and d["totals"]["unpaired"] == 0


def test_short_connections_flag_the_different_path_every_time_and_the_others_never() -> (
    None
):
    rec = Recording()
    paths = ["/a", "/diff", "/b?x=1", "/diff?y=2", "/a", "/diff"]
    for i, p in enumerate(paths):
        rec.session(turns([p]), client=("198.18.1.2", 40000 + i), start=T0 + i)
    d = run(rec)
    assert_only_diff_flagged(d, 3, 3)
    assert ep(d, "GET /b")["exchanges"] == 1  # query string not part of the endpoint
    assert d["sessions"]["copies_paired"] == 6
    lat = ep(d, "GET /a")["latency_ms"]
    assert lat["production"]["p50"] == pytest.approx(PROD_MS, abs=0.02)
    assert lat["target"]["p50"] == pytest.approx(TARGET_MS, abs=0.02)
    assert lat["production"]["count"] == 2 and lat["target"]["count"] == 2


@pytest.mark.parametrize("pipelined", [False, True])
def test_keep_alive_and_pipelined(pipelined: bool) -> None:
    rec = Recording()
    rec.session(turns(["/a", "/diff", "/b", "/diff", "/a", "/diff", "/c"]), pipelined=pipelined,
                mss=50)  # fmt: skip
    d = run(rec)
    assert_only_diff_flagged(d, 3, 4)


def test_chunked_and_gzip_decoded_before_comparing() -> None:
    body = json.dumps({"items": list(range(200)), "name": "x"}).encode()
    z = gzip.compress(body)
    chunked = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Encoding: gzip\r\n"
               b"Transfer-Encoding: chunked\r\n\r\n"
               + b"".join(b"%x\r\n%s\r\n" % (len(z[i:i + 30]), z[i:i + 30])
                          for i in range(0, len(z), 30)) + b"0\r\n\r\n")  # fmt: skip
    plain = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Encoding: gzip\r\n"
             b"Content-Length: %d\r\n\r\n" % len(gzip.compress(body, 1)) + gzip.compress(body, 1))  # fmt: skip
    other = body.replace(b'"x"', b'"y"', 1)
    changed = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Encoding: gzip\r\n"
               b"Content-Length: %d\r\n\r\n" % len(gzip.compress(other)) + gzip.compress(other))  # fmt: skip
    rec = Recording()
    rec.session(
        [(http_get("/z"), chunked, plain), (http_get("/z2"), chunked, changed)], mss=100
    )
    d = run(rec)
    assert (
        ep(d, "GET /z")["identical"] == 1
    )  # other framing and compression level, same body
    ex = ep(d, "GET /z2")["examples"][0]
    assert (ex["kind"], ex["where"]) == ("body", "$.name")


def json_response(obj: object) -> bytes:
    body = json.dumps(obj).encode()
    return (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"
            % len(body) + body)  # fmt: skip


def test_json_compared_as_values_with_ignored_paths() -> None:
    prod = json_response(
        {"meta": {"time": 1}, "items": [{"id": 1, "v": "a"}, {"id": 2, "v": "b"}]}
    )
    reordered = json_response(
        {"items": [{"v": "a", "id": 7}, {"id": 8, "v": "b"}], "meta": {"time": 2}}
    )
    rec = Recording()
    rec.session([(http_get("/j"), prod, reordered)])
    d = run(rec)
    ex = ep(d, "GET /j")["examples"][0]
    assert (ex["kind"], ex["where"]) == ("body", "$.meta.time")
    d = run(rec, Options.build(json_paths=["$.meta.time"]))
    assert ep(d, "GET /j")["examples"][0]["where"] == "$.items[0].id"
    d = run(rec, Options.build(json_paths=["$.meta.time", "$.items[*].id"]))
    assert ep(d, "GET /j")["identical"] == 1
    d = run(rec, Options.build(json_paths=["$..id", "$.meta"]))
    assert ep(d, "GET /j")["identical"] == 1


def test_headers_case_insensitive_defaults_ignored_and_ignore_header() -> None:
    prod = http_ok(b"x", extra='X-Trace: 1\r\nETag: "a"\r\n')
    tgt = http_ok(
        b"x", date="Thu, 01 Jan 2037 00:00:00 GMT", extra='x-trace: 2\r\netag: "b"\r\n'
    )
    rec = Recording()
    rec.session([(http_get("/h"), prod, tgt)])
    ex = ep(run(rec), "GET /h")["examples"][0]
    assert (ex["kind"], ex["where"], ex["status_changed"]) == (
        "header",
        "header x-trace",
        False,
    )
    assert ep(run(rec, Options.build(headers=["X-TRACE"])), "GET /h")["identical"] == 1


def test_status_change_is_counted_and_regex_scrubs_bodies() -> None:
    rec = Recording()
    rec.session([
        (http_get("/s"), http_ok(b"ok"), http_ok(b"oops", status="500 Internal Server Error")),
        (http_get("/r"), http_ok(b"id=1234abcd done"), http_ok(b"id=99ff0000 done")),
    ])  # fmt: skip
    d = run(rec)
    s = ep(d, "GET /s")
    assert (s["different"], s["status_changed"]) == (1, 1)
    assert s["examples"][0]["status"] == {"production": "200", "target": "500"}
    assert ep(d, "GET /r")["different"] == 1
    d = run(rec, Options.build(regexes=[r"id=[0-9a-f]{8}"]))
    assert ep(d, "GET /r")["identical"] == 1 and ep(d, "GET /s")["status_changed"] == 1


def test_no_body_responses_keep_the_framing() -> None:
    head = http_ok(b"")[: -0 or None].replace(
        b"Content-Length: 0", b"Content-Length: 12345"
    )
    r204 = b"HTTP/1.1 204 No Content\r\n\r\n"
    r304 = b'HTTP/1.1 304 Not Modified\r\nETag: "x"\r\n\r\n'
    cont = b"HTTP/1.1 100 Continue\r\n\r\n" + http_ok(b"posted")
    post = b"POST /p HTTP/1.1\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\nabcd"
    head_req = b"HEAD /h HTTP/1.1\r\n\r\n"
    t = [(head_req, head, head), (http_get("/n"), r204, r204), (http_get("/m"), r304, r304),
         (post, cont, cont), (http_get("/diff"), http_ok(b"1"), http_ok(b"2"))]  # fmt: skip
    rec = Recording()
    rec.session(t, pipelined=True)
    d = run(rec)
    assert d["endpoints"][0]["endpoint"] == "GET /diff"  # differences first
    assert ep(d, "GET /diff")["different"] == 1
    for name in ("HEAD /h", "GET /n", "GET /m", "POST /p"):
        assert ep(d, name)["identical"] == 1, name


def test_target_that_never_answers_is_unpaired_free_but_different() -> None:
    rec = Recording()
    rec.session([(http_get("/a"), http_ok(b"a"), b"")])
    d = run(rec)
    a = ep(d, "GET /a")
    assert a["different"] == 1 and a["examples"][0]["status"]["target"] == "none"


def test_copies_two_each_compared_against_the_same_production_response() -> None:
    rec = Recording()
    copies = [(CLIENT, ("198.18.3.1", 80)), (("198.18.1.2", 50001), ("198.18.3.1", 80))]
    rec.session([(http_get("/a"), http_ok(b"a"), [http_ok(b"a"), http_ok(b"A")]),
                 (http_get("/b"), http_ok(b"b"), [http_ok(b"b"), http_ok(b"b")])],
                copies=copies)  # fmt: skip
    d = run(rec)
    a, b = ep(d, "GET /a"), ep(d, "GET /b")
    assert (a["exchanges"], a["identical"], a["different"]) == (2, 1, 1)
    assert a["examples"][0]["session"] == "198.18.1.2:40000 copy 1"
    assert (b["exchanges"], b["identical"]) == (2, 2)
    assert a["latency_ms"]["production"]["count"] == 1  # once per production exchange
    assert a["latency_ms"]["target"]["count"] == 2  # once per copy
    assert d["sessions"]["copies_paired"] == 2


def test_client_pool_sent_client_differs_from_the_client() -> None:
    rec = Recording()
    for i in range(4):
        rec.session(turns(["/a", "/diff"]), client=("198.18.1.2", 40000 + i), start=T0 + i,
                    copies=[(("198.18.9.9", 1024 + i), ("198.18.3.1", 80))])  # fmt: skip
    assert_only_diff_flagged(run(rec), 4, 4)


def test_port_reuse_pairs_each_connection_with_its_own_session_line() -> None:
    rec = Recording()
    # the same client ip:port three times; the second one's target answers differently
    for i, isn in enumerate((1000, 7_000_000, 90_000_000)):
        body = b"r%d" % i
        rec.session([(http_get(f"/p{i}"), http_ok(body), http_ok(body + (b"!" if i == 1 else b"")))],
                    start=T0 + i * 0.05, isn=isn)  # fmt: skip
    d = run(rec)
    assert [(ep(d, f"GET /p{i}")["identical"], ep(d, f"GET /p{i}")["different"])
            for i in range(3)] == [(1, 0), (0, 1), (1, 0)]  # fmt: skip
    assert d["totals"]["unpaired"] == 0 and d["sessions"]["production_connections"] == 3


def test_target_clock_skew_is_in_the_target_latency_only() -> None:
    rec = Recording()
    rec.session(turns(["/a"]), skew=0.5)
    lat = ep(run(rec), "GET /a")["latency_ms"]
    assert lat["production"]["p50"] == pytest.approx(PROD_MS, abs=0.02)
    assert lat["target"]["p50"] == pytest.approx(TARGET_MS + 500, abs=0.02)
