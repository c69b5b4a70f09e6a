"""The per-endpoint aggregate of a comparison and its three renderings: a terminal table,
JSON and one self-contained HTML file.

Latency, per exchange, in milliseconds:

* production: capture time of the response's first byte minus that of the request's last
  byte, both captured on the online host (one clock);
* target: capture time of the target's first reply byte at the assistant (the assistant's
  clock) minus the time the request's last byte was sent to the target by nfreplay-online
  (the online host's clock). Two clocks: any offset between them is in the number (keep them
  NTP-synchronised; a negative value means the clocks disagree).

Invariants: the counts obey ``exchanges = identical + different + unpaired + gaps`` per
endpoint and in total; ``status_changed`` counts a subset of ``different``. The JSON and the
HTML are made from the same ``to_dict`` numbers. Everything shown comes from recorded bytes
and is hostile: the HTML escapes all of it and caps its size, the table replaces
non-printable characters.
"""

from __future__ import annotations

import html
import json
import math
import re
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from nfreplay.compare.diff import Difference

__all__ = [
    "CLOCKS",
    "EndpointStats",
    "Report",
    "percentile",
    "render_html",
    "render_json",
    "render_table",
    "to_dict",
]

CLOCKS = (
    "production latency: first response byte minus last request byte, both captured on the "
    "online host; target latency: first reply byte captured at the assistant (assistant's "
    "clock) minus last request byte sent to the target (online host's clock): two clocks"
)
_SHOWN = 4000  # characters of an example side in the HTML


def percentile(values: Sequence[float], p: float) -> float | None:
    """Nearest-rank percentile (None for no values)."""
    if not values:
        return None
    ordered = sorted(values)
    k = max(0, math.ceil(p / 100 * len(ordered)) - 1)
    return ordered[k]


def _ms(v: float | None) -> float | None:
    return None if v is None else round(v, 3)


@dataclass(slots=True)
class EndpointStats:
    endpoint: str
    protocol: str
    exchanges: int = 0
    identical: int = 0
    different: int = 0
    status_changed: int = 0
    unpaired: int = 0
    gaps: int = 0
    production_ms: list[float] = field(default_factory=list)
    target_ms: list[float] = field(default_factory=list)
    examples: list[dict[str, Any]] = field(default_factory=list)


@dataclass(slots=True)
class Report:
    """What a comparison found. ``add_*`` methods feed it; ``examples`` caps the differences
    kept per endpoint."""

    examples: int = 3
    endpoints: dict[str, EndpointStats] = field(default_factory=dict)
    sessions: dict[str, int] = field(default_factory=dict)
    inputs: dict[str, Any] = field(default_factory=dict)
    ignored_headers: tuple[str, ...] = ()

    def _ep(self, endpoint: str, protocol: str) -> EndpointStats:
        st = self.endpoints.get(endpoint)
        if st is None:
            st = self.endpoints[endpoint] = EndpointStats(endpoint, protocol)
        return st

    def count(self, key: str, n: int = 1) -> None:
        self.sessions[key] = self.sessions.get(key, 0) + n

    def add_latency(self, endpoint: str, protocol: str, side: str, ms: float) -> None:
        st = self._ep(endpoint, protocol)
        (st.production_ms if side == "production" else st.target_ms).append(ms)

    def add_pair(
        self, endpoint: str, protocol: str, diff: Difference, session: str
    ) -> None:
        st = self._ep(endpoint, protocol)
        st.exchanges += 1
        if diff.identical:
            st.identical += 1
            return
        st.different += 1
        st.status_changed += diff.status_changed
        if len(st.examples) < self.examples:
            st.examples.append({
                "session": session,
                "kind": diff.kind,
                "where": diff.where,
                "status_changed": diff.status_changed,
                "status": {"production": diff.statuses[0], "target": diff.statuses[1]},
                "production": diff.production,
                "target": diff.target,
            })  # fmt: skip

    def add_unpaired(self, endpoint: str, protocol: str) -> None:
        st = self._ep(endpoint, protocol)
        st.exchanges += 1
        st.unpaired += 1

    def add_gap(self, endpoint: str, protocol: str) -> None:
        st = self._ep(endpoint, protocol)
        st.exchanges += 1
        st.gaps += 1

    def has_differences(self) -> bool:
        """Any difference or unpaired exchange (the CLI's exit code 1)."""
        return any(st.different or st.unpaired for st in self.endpoints.values())


_COUNTS = ("exchanges", "identical", "different", "status_changed", "unpaired", "gaps")


def to_dict(report: Report) -> dict[str, Any]:
    """The JSON document (see the module for the fields' meaning)."""
    eps = sorted(report.endpoints.values(),
                 key=lambda s: (-s.different - s.unpaired, -s.exchanges, s.endpoint))  # fmt: skip
    endpoints = []
    totals = dict.fromkeys(_COUNTS, 0)
    for st in eps:
        entry: dict[str, Any] = {"endpoint": st.endpoint, "protocol": st.protocol}
        for k in _COUNTS:
            entry[k] = getattr(st, k)
            totals[k] += getattr(st, k)
        entry["latency_ms"] = {
            side: {
                "count": len(v),
                "p50": _ms(percentile(v, 50)),
                "p99": _ms(percentile(v, 99)),
            }
            for side, v in (("production", st.production_ms), ("target", st.target_ms))
        }
        entry["examples"] = st.examples
        endpoints.append(entry)
    return {
        "endpoints": endpoints,
        "totals": totals,
        "sessions": dict(sorted(report.sessions.items())),
        "inputs": report.inputs,
        "ignored_headers": list(report.ignored_headers),
        "clocks": CLOCKS,
    }


def render_json(report: Report) -> str:
    return json.dumps(to_dict(report), indent=2, ensure_ascii=True) + "\n"


def _clean(text: str, limit: int = 60) -> str:
    """Printable, one line, at most ``limit`` characters: safe for a terminal."""
    text = "".join(c if c.isprintable() else "?" for c in text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _fmt(v: float | None) -> str:
    return "-" if v is None else f"{v:.3f}"


def render_table(report: Report) -> str:
    """The terminal table, then the totals, the sessions, the first difference of each endpoint
    that has one, and how latency is measured."""
    d = to_dict(report)
    head = ("endpoint", "exch", "same", "diff", "status", "unpaired", "gaps",
            "prod p50", "prod p99", "tgt p50", "tgt p99")  # fmt: skip
    rows: list[tuple[str, ...]] = [head]
    for e in d["endpoints"]:
        lat = e["latency_ms"]
        rows.append((_clean(e["endpoint"]), *(str(e[k]) for k in _COUNTS),
                     _fmt(lat["production"]["p50"]), _fmt(lat["production"]["p99"]),
                     _fmt(lat["target"]["p50"]), _fmt(lat["target"]["p99"])))  # fmt: skip
    t = d["totals"]
    rows.append(("total", *(str(t[k]) for k in _COUNTS), "", "", "", ""))
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    lines = []
    for n, r in enumerate(rows):
        cells = [r[0].ljust(widths[0])] + [
            c.rjust(w) for c, w in zip(r[1:], widths[1:], strict=True)
        ]
        lines.append("  ".join(cells).rstrip())
        if n == 0 or n == len(rows) - 2:
            lines.append("-" * len(lines[0]))
    s = d["sessions"]
    lines.append("sessions: " + (", ".join(f"{k} {v}" for k, v in s.items()) or "none"))
    for e in d["endpoints"]:
        for ex in e["examples"][:1]:
            at = " " if ex["kind"] == "status" else " at "
            lines.append(f"{_clean(e['endpoint'])}: first difference in {_clean(ex['session'])}: "
                         f"{ex['kind']}{at}{_clean(ex['where'], 80)}")  # fmt: skip
    lines += textwrap.wrap("latency in ms; " + CLOCKS, 100)
    return "\n".join(lines) + "\n"


# --- HTML ----------------------------------------------------------------------------------

_CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222}
table{border-collapse:collapse;margin:1em 0}
th,td{border:1px solid #ccc;padding:.25em .6em;text-align:right}
th:first-child,td:first-child{text-align:left}
tr.bad td{background:#fff3f0}
.side{display:flex;gap:1em}
.side pre{flex:1;overflow:auto;max-height:24em;background:#f6f6f6;padding:.5em;margin:0;
white-space:pre-wrap;word-break:break-all}
h2{margin-top:2em;font-size:1.1em}
.prod{fill:#3b7dd8}.tgt{fill:#e8743b}
small{color:#666}
"""


_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


def _e(text: object) -> str:
    """Escaped for HTML, control characters (but CR, LF and tab) shown as ``\\xNN``."""
    visible = _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", str(text))
    return html.escape(visible, quote=True)


def _histogram(prod: Sequence[float], tgt: Sequence[float], bins: int = 20) -> str:
    """Inline SVG: production and target latency histograms on one axis."""
    values = [*prod, *tgt]
    if not values:
        return "<p><small>no latency measured</small></p>"
    hi = max(percentile(values, 99) or 0.0, 1e-3)
    lo = min(0.0, min(values))
    width, height, pad = 420, 120, 24
    step = (hi - lo) / bins

    def counts(vs: Sequence[float]) -> list[int]:
        c = [0] * bins
        for v in vs:
            c[min(bins - 1, max(0, int((v - lo) / step)))] += 1
        return c

    cp, ct = counts(prod), counts(tgt)
    top = max(max(cp), max(ct), 1)
    bw = width / bins
    svg = f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height + pad}"'
    parts = [svg + ' role="img" aria-label="latency histogram">']
    for i in range(bins):
        for j, (c, cls) in enumerate(((cp[i], "prod"), (ct[i], "tgt"))):
            h = height * c / top
            parts.append(f'<rect class="{cls}" x="{i * bw + j * bw / 2:.1f}" y="{height - h:.1f}" '
                         f'width="{bw / 2 - 1:.1f}" height="{h:.1f}"><title>{c}</title></rect>')  # fmt: skip
    parts.append(
        f'<text x="0" y="{height + 16}" font-size="11">{_e(_fmt(lo))} ms</text>'
    )
    parts.append(f'<text x="{width}" y="{height + 16}" font-size="11" text-anchor="end">'
                 f'≥{_e(_fmt(hi))} ms</text></svg>')  # fmt: skip
    return "".join(parts)


def render_html(report: Report) -> str:
    """One self-contained HTML page: no script, no external asset."""
    d = to_dict(report)
    out = [
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">',
        "<title>nfreplay compare</title><style>",
        _CSS,
        "</style></head><body>",
        "<h1>nfreplay compare: production vs target</h1>",
    ]
    head = ("endpoint", "exchanges", "identical", "different", "status_changed", "unpaired",
            "gaps", "prod p50", "prod p99", "target p50", "target p99")  # fmt: skip
    out.append('<table id="endpoints"><thead><tr>')
    out += [f"<th>{_e(h)}</th>" for h in head]
    out.append("</tr></thead><tbody>")
    for e in d["endpoints"]:
        lat = e["latency_ms"]
        cls = ' class="bad"' if e["different"] or e["unpaired"] else ""
        out.append(f'<tr{cls} data-endpoint="{_e(e["endpoint"][:200])}">'
                   f'<td class="endpoint">{_e(e["endpoint"][:200])}</td>')  # fmt: skip
        out += [f'<td class="{k}">{e[k]}</td>' for k in _COUNTS]
        for side in ("production", "target"):
            for p in ("p50", "p99"):
                out.append(f'<td class="{side}-{p}">{_e(_fmt(lat[side][p]))}</td>')
        out.append("</tr>")
    t = d["totals"]
    out.append('<tr id="totals"><td class="endpoint">total</td>')
    out += [f'<td class="{k}">{t[k]}</td>' for k in _COUNTS]
    out.append("<td></td>" * 4 + "</tr></tbody></table>")
    out.append('<p id="sessions">sessions: ' + _e(", ".join(f"{k} {v}" for k, v in
                                                          d["sessions"].items()) or "none"))  # fmt: skip
    out.append(f"</p><p><small>latency in ms; {_e(CLOCKS)}. Ignored headers: "
               f"{_e(', '.join(d['ignored_headers']))}.</small></p>")  # fmt: skip
    out.append('<p><svg width="12" height="12"><rect class="prod" width="12" height="12"/></svg>'
               ' production <svg width="12" height="12"><rect class="tgt" width="12" '
               'height="12"/></svg> target</p>')  # fmt: skip
    for n, e in enumerate(d["endpoints"]):
        st = report.endpoints[e["endpoint"]]
        out.append(f'<section id="ep{n}"><h2>{_e(e["endpoint"][:200])}</h2>')
        out.append(_histogram(st.production_ms, st.target_ms))
        for ex in e["examples"]:
            at = " " if ex["kind"] == "status" else " at "
            out.append(f"<h3>{_e(ex['session'])}: {_e(ex['kind'])}{at}"
                       f"<code>{_e(ex['where'][:300])}</code></h3>")  # fmt: skip
            out.append('<div class="side">')
            for side in ("production", "target"):
                text = ex[side]
                if len(text) > _SHOWN:
                    text = text[:_SHOWN] + "…"
                out.append(f'<pre class="{side}"><b>{side}</b>\n{_e(text)}</pre>')
            out.append("</div>")
        out.append("</section>")
    out.append("</body></html>\n")
    return "".join(out)
