"""The recording format: file names and session-map lines, both ways."""

from __future__ import annotations

import json

import pytest

from nfreplay.errors import WireError
from nfreplay.proto.recording import (
    SessionLine,
    decode_line,
    encode_line,
    file_name,
    parse_endpoint,
    parse_file_name,
)


def test_file_names_both_ways() -> None:
    assert file_name("production", 1) == "production-000001.pcapng"
    assert file_name("to-target", 999999) == "to-target-999999.pcapng"
    assert file_name("sessions", 0) == "sessions-000000.jsonl"
    assert file_name("target", 42) == "target-000042.pcapng"
    for kind in ("production", "to-target", "sessions", "target"):
        assert parse_file_name(file_name(kind, 7)) == (kind, 7)
    for bad in ("production-1.pcapng", "sessions-000001.pcapng", "target-000001.pcap",
                "x-000001.pcapng", "production-0000001.pcapng", "production-000001.pcapng~"):  # fmt: skip
        assert parse_file_name(bad) is None
    with pytest.raises(ValueError):
        file_name("production", 1_000_000)
    with pytest.raises(ValueError):
        file_name("other", 1)


def test_the_spec_example_line_decodes() -> None:
    line = decode_line(
        '{"client": "198.18.1.2:40000", "server": "198.18.2.1:80", "sent_client": '
        '"198.18.1.2:40000", "target": "198.18.3.1:80", "copy": 0, "start": 1700000000.123456789}'
    )
    assert line == SessionLine(("198.18.1.2", 40000), ("198.18.2.1", 80),
                               ("198.18.1.2", 40000), ("198.18.3.1", 80), 0,
                               1700000000.123456789)  # fmt: skip


def test_the_good_line_decodes() -> None:
    assert decode_line(with_()).copy == 0


def test_encode_decode_round_trip() -> None:
    line = SessionLine(("10.0.0.1", 1), ("10.0.0.2", 80), ("10.9.9.9", 65535),
                       ("10.0.0.3", 8080), 3, 1700000000.5)  # fmt: skip
    text = encode_line(line)
    assert text.endswith("\n") and text.count("\n") == 1
    assert decode_line(text) == line
    assert decode_line(text.encode()) == line


GOOD = {"client": "1.2.3.4:5", "server": "1.2.3.4:6", "sent_client": "1.2.3.4:7",
        "target": "1.2.3.4:8", "copy": 0, "start": 1}  # fmt: skip


def with_(**kw: object) -> str:
    return json.dumps({**GOOD, **kw})


@pytest.mark.parametrize(
    "text",
    [
        "", "{", "[]", "null", "{}", '{"client": "1.2.3.4:5"}',
        with_(client="1.2.3.4"), with_(client="1.2.3.4:70000"), with_(client="::1:5"),
        with_(client=5), with_(copy=True), with_(copy=-1), with_(start="x"),
        with_(start=float("inf")), "[" * 100000,
    ],
)  # fmt: skip
def test_bad_lines_raise_wire_error(text: str) -> None:
    with pytest.raises(WireError):
        decode_line(text)


def test_endpoints() -> None:
    assert parse_endpoint("198.18.1.2:40000") == ("198.18.1.2", 40000)
    for bad in ("198.18.1.2", "198.18.1.2:", "host:80", "1.2.3.4:-1", "1.2.3.4:1e3"):
        with pytest.raises(WireError):
            parse_endpoint(bad)
