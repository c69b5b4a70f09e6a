"""Redis (RESP) and raw protocols end to end, and their framing on its own."""

from __future__ import annotations

from typing import Any

import pytest

from nfreplay.compare import resp
from nfreplay.compare.comparison import compare_captures
from nfreplay.compare.diff import Options
from nfreplay.compare.exchanges import sniff
from nfreplay.compare.report import to_dict

from .recorder import T0, Recording


def run(rec: Recording, options: Options | None = None) -> dict[str, Any]:
    return to_dict(compare_captures(rec.production, rec.sent, rec.replies, rec.lines,
                                    options or Options()))  # fmt: skip


def ep(d: dict[str, Any], name: str) -> dict[str, Any]:
    [e] = [e for e in d["endpoints"] if e["endpoint"] == name]
    return e


def cmd(*args: bytes) -> bytes:
    return b"*%d\r\n" % len(args) + b"".join(
        b"$%d\r\n%s\r\n" % (len(a), a) for a in args
    )


def bulk(v: bytes | None) -> bytes:
    return b"$-1\r\n" if v is None else b"$%d\r\n%s\r\n" % (len(v), v)


def test_redis_one_differing_key_is_flagged_every_time_and_nothing_else() -> None:
    rec = Recording()
    turns = []
    for i in range(3):
        turns += [
            (cmd(b"SET", b"k%d" % i, b"v"), b"+OK\r\n", b"+OK\r\n"),
            (cmd(b"GET", b"same"), bulk(b"s"), bulk(b"s")),
            (cmd(b"GET", b"diff"), bulk(b"old"), bulk(b"new")),
            (b"PING\r\n", b"+PONG\r\n", b"+PONG\r\n"),  # inline command
            (cmd(b"MGET", b"a", b"nope"), b"*2\r\n" + bulk(b"1") + bulk(None),
             b"*2\r\n" + bulk(b"1") + bulk(None)),
            (cmd(b"LRANGE", b"l", b"0", b"-1"), b"*2\r\n*1\r\n:1\r\n$-1\r\n",
             b"*2\r\n*1\r\n:1\r\n$-1\r\n"),  # nested arrays, null
        ]  # fmt: skip
    rec.session(
        turns,
        server=("198.18.2.1", 6379),
        copies=[(("198.18.1.2", 40000), ("198.18.3.1", 6379))],
        mss=7,
    )
    d = run(rec)
    get = ep(d, "GET")
    assert (get["exchanges"], get["identical"], get["different"]) == (6, 3, 3)
    assert get["examples"][0]["production"].endswith("old\r\n")
    for name in ("SET", "PING", "MGET", "LRANGE"):
        e = ep(d, name)
        assert e["identical"] == e["exchanges"] == 3, name
    assert d["totals"]["unpaired"] == 0


def test_redis_error_reply_is_a_status_change() -> None:
    rec = Recording()
    rec.session([(cmd(b"INCR", b"x"), b":2\r\n", b"-ERR value is not an integer\r\n")],
                server=("198.18.2.1", 6379))  # fmt: skip
    e = ep(run(rec), "INCR")
    assert (e["different"], e["status_changed"]) == (1, 1)
    assert e["examples"][0]["status"] == {"production": "integer", "target": "error"}


@pytest.mark.parametrize("skew", [0.0, -3.0, 7.5])
def test_raw_protocol_turns_with_a_greeting(skew: float) -> None:
    """Turns are cut by ACK numbers: the assistant's clock, however far off, changes nothing
    but the target's latency."""
    rec = Recording()
    hello = b"\x00\x01server v1\x00"
    turns = [(b"\x10AUTH\x00", b"\x11ok", b"\x11ok"), (b"\x20Q1", b"\x21" + bytes(3000), b"\x21" + bytes(3000)),
             (b"\x20Q2", b"\x21rows=5", b"\x21rows=6"), (b"\x30BYE", b"\x31", b"\x31")]  # fmt: skip
    rec.session(turns, server=("198.18.2.1", 5432), greeting=(hello, hello), mss=500, skew=skew,
                copies=[(("198.18.1.2", 40000), ("198.18.3.1", 5432))])  # fmt: skip
    d = run(rec)
    e = ep(d, "port 5432")
    assert (e["exchanges"], e["identical"], e["different"]) == (5, 4, 1)
    assert e["examples"][0]["where"] == "byte 6"
    assert e["latency_ms"]["target"]["p99"] == pytest.approx(
        5.0 + skew * 1000, abs=0.05
    )
    assert sniff(b"\x10AUTH") == "raw"


def test_raw_regex_scrubs_bytes() -> None:
    rec = Recording()
    rec.session([(b"time?\n", b"now=1700000000\n", b"now=1700000042\n")], server=("198.18.2.1", 7000),
                copies=[(("198.18.1.2", 40000), ("198.18.3.1", 7000))])  # fmt: skip
    assert ep(run(rec), "port 7000")["different"] == 1
    assert (
        ep(run(rec, Options.build(regexes=[r"now=\d+"])), "port 7000")["identical"] == 1
    )


@pytest.mark.parametrize(
    ("data", "end"),
    [
        (b"+OK\r\n", 5), (b"-ERR x\r\n", 8), (b":-5\r\n", 5), (b"$-1\r\n", 5), (b"*-1\r\n", 5),
        (b"$3\r\nabc\r\n", 9), (b"*2\r\n*1\r\n+a\r\n$0\r\n\r\n", 18), (b"_\r\n", 3),
        (b"%1\r\n+k\r\n:1\r\n", 12), (b"|1\r\n+a\r\n+b\r\n:7\r\n", 16), (b"~0\r\n", 4),
        (b"+OK", None), (b"$5\r\nab", None), (b"*2\r\n:1\r\n", None), (b"", None),
        (b"?x\r\n", resp.MALFORMED), (b"$abc\r\n", resp.MALFORMED), (b"$1\r\nab\r\n", resp.MALFORMED),
    ],
)  # fmt: skip
def test_resp_reply_framing(data: bytes, end: int | None) -> None:
    assert resp.parse_reply(data, 0) == end


def test_resp_deep_nesting_does_not_recurse() -> None:
    data = b"*1\r\n" * 200_000 + b":1\r\n"
    assert resp.parse_reply(data, 0) == len(data)


def test_resp_commands() -> None:
    assert resp.parse_command(cmd(b"get", b"k"), 0) == (
        len(cmd(b"get", b"k")),
        [b"get", b"k"],
    )
    assert resp.parse_command(b"\r\nset a  b\r\n", 0) == (12, [b"set", b"a", b"b"])
    assert resp.parse_command(b"*2\r\n$3\r\nget\r\n", 0) is None
    assert resp.parse_command(b"*1\r\n:1\r\n", 0) == resp.MALFORMED
    assert resp.command_name([b"get\x1b[31m"]) == "GET?[31M"
    assert sniff(cmd(b"GET", b"k")) == "redis" and sniff(b"ping\r\n") == "redis"
    assert sniff(b"GET / HTTP/1.1\r\n\r\n") == "http" and sniff(b"GET /") == "http"
    assert sniff(b"GETX / HTTP/1.1\r\n") == "raw"


def test_a_session_line_without_its_production_connection_leaves_the_target_unpaired() -> (
    None
):
    rec = Recording()
    rec.session([(b"q\n", b"a\n", b"a\n")], server=("198.18.2.1", 7000), start=T0,
                copies=[(("198.18.1.2", 40000), ("198.18.3.1", 7000))])  # fmt: skip
    rec.production = []
    d = run(rec)
    assert (
        d["totals"]["unpaired"] == 1 and d["sessions"]["lines_without_production"] == 1
    )
