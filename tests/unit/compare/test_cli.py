"""`nfreplay compare` on recordings written to disk: exit codes, JSON, HTML, truncated files,
bad input."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from nfreplay.cli import options
from nfreplay.cli.main import main
from nfreplay.proto.pcapfile import CaptureFile, PcapngWriter
from nfreplay.proto.recording import SessionLine, encode_line

from .recorder import T0, Recording, http_get, http_ok


def recording(tmp_path: Path, differ: bool = True) -> tuple[Path, Path]:
    rec = Recording()
    for i in range(3):
        rec.session([(http_get("/a"), http_ok(b"a"), http_ok(b"a")),
                     (http_get("/diff"), http_ok(b"d"), http_ok(b"D" if differ else b"d"))],
                    client=("198.18.1.2", 40000 + i), start=T0 + i)  # fmt: skip
    online, target = tmp_path / "online", tmp_path / "target"
    rec.write(online, target)
    return online, target


def compare(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = options.run_main(main, ["compare", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_exit_codes_and_table(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    online, target = recording(tmp_path)
    code, out, _ = compare(capsys, str(online), str(target))
    assert code == 1
    assert "GET /diff" in out and "GET /a" in out and "two clocks" in out
    (tmp_path / "same").mkdir()
    same_online, same_target = recording(tmp_path / "same", differ=False)
    code, out, _ = compare(capsys, str(same_online), str(same_target))
    assert code == 0 and "GET /diff" in out


def test_json_schema(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    online, target = recording(tmp_path)
    code, out, _ = compare(
        capsys, str(online), str(target), "--json", "--examples", "1"
    )
    assert code == 1
    d: dict[str, Any] = json.loads(out)
    assert set(d) >= {
        "endpoints",
        "sessions",
        "totals",
        "inputs",
        "clocks",
        "ignored_headers",
    }
    diff = next(e for e in d["endpoints"] if e["endpoint"] == "GET /diff")
    assert set(diff) >= {"endpoint", "protocol", "exchanges", "identical", "different",
                         "status_changed", "unpaired", "gaps", "latency_ms", "examples"}  # fmt: skip
    assert (diff["exchanges"], diff["different"]) == (3, 3)
    assert set(diff["latency_ms"]) == {"production", "target"}
    assert set(diff["latency_ms"]["target"]) == {"count", "p50", "p99"}
    assert len(diff["examples"]) == 1
    assert d["inputs"]["files"] == {
        "production": 1,
        "to-target": 1,
        "sessions": 1,
        "target": 1,
    }
    assert d["sessions"]["copies_paired"] == 3


def test_html_file_is_written_and_escaped(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    online, target = recording(tmp_path)
    html = tmp_path / "r.html"
    code, _, _ = compare(capsys, str(online), str(target), "--html", str(html))
    text = html.read_text()
    assert code == 1 and text.startswith("<!DOCTYPE html>") and "<svg" in text
    assert "http://" not in text.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert "<script" not in text and "src=" not in text


def test_truncated_files_are_read_up_to_the_cut(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    online, target = recording(tmp_path)
    reply = target / "target-000001.pcapng"
    data = reply.read_bytes()
    reply.write_bytes(
        data[: len(data) - 30]
    )  # inside the last block (the target's last ACK)
    sessions = online / "sessions-000001.jsonl"
    sessions.write_text(sessions.read_text() + encode_line_cut())
    (online / "production-000002.pcapng").write_bytes(
        b""
    )  # created, then the recorder died
    code, out, _ = compare(capsys, str(online), str(target), "--json")
    d = json.loads(out)
    assert d["inputs"]["truncated_files"] == ["target-000001.pcapng"]
    assert d["inputs"]["bad_session_lines"] == 1
    assert d["inputs"]["empty_files"] == ["production-000002.pcapng"]
    diff = next(e for e in d["endpoints"] if e["endpoint"] == "GET /diff")
    assert diff["different"] == 3 and code == 1


def encode_line_cut() -> str:
    line = encode_line(
        SessionLine(
            ("1.2.3.4", 5), ("1.2.3.4", 6), ("1.2.3.4", 5), ("1.2.3.4", 7), 0, T0
        )
    )
    return line[:20]  # no newline: cut by a kill


@pytest.mark.parametrize(
    "argv",
    [
        ["/nonexistent-dir", "{target}"],
        ["{empty}", "{target}"],
        ["{online}", "{online}"],  # no target-NNNNNN files there
        ["{online}", "{target}", "--ignore-regex", "("],
        ["{online}", "{target}", "--ignore-json-path", "meta.time"],
        ["{online}", "{target}", "--examples", "-1"],
        ["{online}", "{target}", "--no-such-flag"],
        ["{online}", "{notacapture}"],
    ],
)
def test_bad_input_exits_2_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    online, target = recording(tmp_path)
    (tmp_path / "empty").mkdir()
    bogus = tmp_path / "bogus"
    bogus.mkdir()
    (bogus / "target-000001.pcapng").write_text("hello, not a capture\n")
    paths = {"target": str(target), "online": str(online), "empty": str(tmp_path / "empty"),
             "notacapture": str(bogus)}  # fmt: skip
    args = [a.format(**paths) for a in argv]
    if "--no-such-flag" in args:
        with pytest.raises(SystemExit) as exc:
            options.run_main(main, ["compare", *args])
        assert exc.value.code == 2
        return
    code, out, err = compare(capsys, *args)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and "Traceback" not in err


def test_help_names_exit_codes_and_clocks(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["compare", "--help"])
    out = capsys.readouterr().out
    for flag in (
        "--json",
        "--html",
        "--ignore-header",
        "--ignore-json-path",
        "--ignore-regex",
        "--examples",
    ):
        assert flag in out
    assert (
        "0 no differences, 1 differences or unpaired exchanges, 2 bad input"
        in " ".join(out.split())
    )
    assert "assistant's clock" in out and "online host's clock" in " ".join(out.split())


def test_rotated_files_are_read_in_sequence(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    online, target = recording(tmp_path)
    code, whole, _ = compare(capsys, str(online), str(target), "--json")
    # the same recording rotated: every capture and the session map in two files (9, 10)
    for d, kind in ((online, "production"), (online, "to-target"), (target, "target")):
        src = d / f"{kind}-000001.pcapng"
        with open(src, "rb") as f:
            frames = [(fr.ts, fr.ip) for fr in CaptureFile(f, src.name)]
        src.unlink()
        half = len(frames) // 2
        for seq, part in ((9, frames[:half]), (10, frames[half:])):
            with open(d / f"{kind}-{seq:06d}.pcapng", "wb") as f:
                w = PcapngWriter(f)
                for ts, ip in part:
                    w.write(ts, ip)
    lines = (online / "sessions-000001.jsonl").read_text().splitlines(keepends=True)
    (online / "sessions-000001.jsonl").unlink()
    (online / "sessions-000009.jsonl").write_text("".join(lines[:1]))
    (online / "sessions-000010.jsonl").write_text("".join(lines[1:]))
    code2, rotated, _ = compare(capsys, str(online), str(target), "--json")
    a, b = json.loads(whole), json.loads(rotated)
    assert a["endpoints"] == b["endpoints"] and code == code2 == 1
    assert b["inputs"]["files"] == {
        "production": 2,
        "to-target": 2,
        "sessions": 2,
        "target": 2,
    }
