"""The HTML report in a real browser: headless Chromium renders it (no network, no script),
and the DOM it ends with shows the numbers the JSON has. Skipped without /usr/bin/chromium
(tests/setup.sh installs it)."""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from html.parser import HTMLParser
from pathlib import Path

import pytest

from nfreplay.compare.comparison import compare_captures
from nfreplay.compare.diff import Options
from nfreplay.compare.report import render_html, render_json

from .recorder import T0, Recording, http_get, http_ok

CHROMIUM = "/usr/bin/chromium"


class Cells(HTMLParser):
    """The endpoint table's rows: data-endpoint -> {cell class: text}; and every <svg>."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: dict[str, dict[str, str]] = {}
        self.svgs = 0
        self._row: dict[str, str] | None = None
        self._cell: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "tr" and a.get("data-endpoint") is not None:
            self._row = self.rows.setdefault(a["data-endpoint"] or "", {})
        elif tag == "td" and self._row is not None:
            self._cell = a.get("class") or ""
            self._row[self._cell] = ""
        elif tag == "svg":
            self.svgs += 1

    def handle_endtag(self, tag: str) -> None:
        if tag == "td":
            self._cell = None
        elif tag == "tr":
            self._row = None

    def handle_data(self, data: str) -> None:
        if self._row is not None and self._cell is not None:
            self._row[self._cell] += data


@pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="no /usr/bin/chromium")
def test_chromium_renders_the_numbers_the_json_has(tmp_path: Path) -> None:
    rec = Recording()
    evil = b"<img src=x onerror=alert(1)>\x1b[31m"
    for i in range(4):
        rec.session([(http_get("/a"), http_ok(b"a"), http_ok(b"a")),
                     (http_get("/diff"), http_ok(b"d"), http_ok(evil)),
                     (http_get("/500"), http_ok(b"x"), http_ok(b"x", status="500 Oops"))],
                    client=("198.18.1.2", 40000 + i), start=T0 + i)  # fmt: skip
    report = compare_captures(
        rec.production, rec.sent, rec.replies, rec.lines, Options(), 2
    )
    page = tmp_path / "report.html"
    page.write_text(render_html(report), encoding="utf-8")
    with tempfile.TemporaryDirectory(prefix="nfreplay-chromium-") as profile:
        proc = subprocess.run(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
             f"--user-data-dir={profile}", "--dump-dom", page.as_uri()],
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    dom = proc.stdout
    cells = Cells()
    cells.feed(dom)
    d = json.loads(render_json(report))
    assert set(cells.rows) == {e["endpoint"] for e in d["endpoints"]}
    for e in d["endpoints"]:
        row = cells.rows[e["endpoint"]]
        for k in (
            "exchanges",
            "identical",
            "different",
            "status_changed",
            "unpaired",
            "gaps",
        ):
            assert row[k] == str(e[k]), (e["endpoint"], k)
        for side in ("production", "target"):
            for p in ("p50", "p99"):
                assert row[f"{side}-{p}"] == f"{e['latency_ms'][side][p]:.3f}"
    assert cells.rows["GET /diff"]["different"] == "4"
    assert cells.rows["GET /500"]["status_changed"] == "4"
    assert cells.svgs >= 3  # a histogram per endpoint (plus the legend)
    assert "<img" not in dom and "&lt;img src=x onerror=alert(1)&gt;" in dom
