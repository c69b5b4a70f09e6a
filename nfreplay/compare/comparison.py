"""The pipeline: three captures and the session map in, a ``Report`` out.

production connections --pairing--> copies sent to the target (+ the target's replies)
each side --exchanges--> requests and responses --align--> pairs --diff--> the report.

Exchanges are aligned on their request bytes (the target receives production's requests
unchanged): a request missing on one side leaves that side's exchange unpaired instead of
shifting every later pair; requests that differ at the same position are still compared.
Production latency is counted once per production exchange, even with several copies.
"""

from __future__ import annotations

from collections.abc import Iterable

from nfreplay.compare import exchanges as ex
from nfreplay.compare.diff import Options, compare
from nfreplay.compare.pairing import pair
from nfreplay.compare.reassembly import Assembled, Connection, Stream, connections
from nfreplay.compare.report import Report
from nfreplay.proto.recording import SessionLine, format_endpoint

__all__ = ["align", "compare_captures"]

_LOOKAHEAD = 8
_EMPTY = Stream().assemble()


def align(
    prod: list[ex.Exchange], tgt: list[ex.Exchange]
) -> list[tuple[ex.Exchange | None, ex.Exchange | None]]:
    """Pairs in order; None on the side that has no counterpart."""
    out: list[tuple[ex.Exchange | None, ex.Exchange | None]] = []
    i = j = 0
    while i < len(prod) and j < len(tgt):
        if prod[i].request == tgt[j].request:
            out.append((prod[i], tgt[j]))
            i, j = i + 1, j + 1
            continue
        ahead = [
            k
            for k in range(j + 1, min(len(tgt), j + _LOOKAHEAD))
            if tgt[k].request == prod[i].request
        ]
        if ahead:
            out += [(None, tgt[k]) for k in range(j, ahead[0])]
            j = ahead[0]
            continue
        behind = [
            k
            for k in range(i + 1, min(len(prod), i + _LOOKAHEAD))
            if prod[k].request == tgt[j].request
        ]
        if behind:
            out += [(prod[k], None) for k in range(i, behind[0])]
            i = behind[0]
            continue
        out.append((prod[i], tgt[j]))
        i, j = i + 1, j + 1
    out += [(p, None) for p in prod[i:]]
    out += [(None, t) for t in tgt[j:]]
    return out


def _latency(x: ex.Exchange) -> float | None:
    if x.request_done is None or x.response_first is None:
        return None
    return (x.response_first - x.request_done) * 1000.0


def _gaps(report: Report, *streams: Assembled) -> None:
    for s in streams:
        if s.gaps:
            report.count("gap_ranges", len(s.gaps))
            report.count("gap_bytes", s.missing)


def compare_captures(
    production: Iterable[tuple[float, bytes]],
    sent: Iterable[tuple[float, bytes]],
    replies: Iterable[tuple[float, bytes]],
    lines: list[SessionLine],
    options: Options,
    examples: int = 3,
) -> Report:
    """Compare a recording: ``production`` (both directions, online clock), ``sent`` (the
    packets sent to the target, online clock), ``replies`` (the target's, assistant's clock)
    as ``(ts, ip)`` pairs, and the session lines."""
    report = Report(
        examples=examples, ignored_headers=tuple(sorted(options.ignored_headers))
    )
    servers = {ln.server for ln in lines}
    targets = {ln.target for ln in lines}
    cap_p = connections(production, servers)
    cap_s = connections(sent, targets)
    cap_r = connections(replies, targets)
    report.count(
        "bad_packets", cap_p.bad_packets + cap_s.bad_packets + cap_r.bad_packets
    )
    report.count("session_lines", len(lines))
    report.count("production_connections", len(cap_p.connections))
    pairing = pair(cap_p.connections, cap_s.connections, cap_r.connections, lines)

    done: dict[
        int, tuple[str, list[ex.Exchange]]
    ] = {}  # production conn id -> exchanges

    def production_side(conn: Connection) -> tuple[str, list[ex.Exchange]]:
        if id(conn) not in done:
            c, s = conn.to_server.assemble(), conn.to_client.assemble()
            _gaps(report, c, s)
            protocol = ex.sniff(c.data)
            xs = ex.split(c, s, protocol, conn.server[1])
            for x in xs:
                ms = _latency(x)
                if ms is not None and not x.gap:
                    report.add_latency(x.endpoint, x.protocol, "production", ms)
            done[id(conn)] = (protocol, xs)
        return done[id(conn)]

    for conn in pairing.production_alone:
        report.count("production_unpaired")
        for x in production_side(conn)[1]:
            report.add_unpaired(x.endpoint, x.protocol)
    for p in pairing.pairs:
        if p.production is None:
            report.count("lines_without_production")
            prod_xs: list[ex.Exchange] = []
            protocol, port = "", p.line.server[1]
        else:
            protocol, prod_xs = production_side(p.production)
            port = p.production.server[1]
        tgt_xs: list[ex.Exchange] = []
        for conn, reply in zip(p.sent, p.replies, strict=True):
            c = conn.to_server.assemble()
            s = reply.to_client.assemble() if reply is not None else _EMPTY
            _gaps(report, c, s)
            tgt_xs += ex.split(c, s, protocol or ex.sniff(c.data), port)
        if not p.sent:
            report.count("copies_never_sent")
        elif p.production is not None:
            report.count("copies_paired")
        if any(r is None for r in p.replies):
            report.count(
                "connections_without_replies", sum(r is None for r in p.replies)
            )
        session = f"{format_endpoint(p.line.client)} copy {p.line.copy}"
        for a, b in align(prod_xs, tgt_xs):
            if b is not None and a is None:
                report.add_unpaired(b.endpoint, b.protocol)
                continue
            if a is not None and b is None:
                report.add_unpaired(a.endpoint, a.protocol)
                continue
            assert a is not None and b is not None
            ms = _latency(b)
            if ms is not None and not b.gap:
                report.add_latency(a.endpoint, a.protocol, "target", ms)
            if a.gap or b.gap:
                report.add_gap(a.endpoint, a.protocol)
            else:
                report.add_pair(a.endpoint, a.protocol, compare(a, b, options), session)
    for conn in pairing.sent_alone:
        report.count("target_connections_unpaired")
        c = conn.to_server.assemble()
        for x in ex.split(c, _EMPTY, ex.sniff(c.data), conn.server[1]):
            report.add_unpaired(x.endpoint, x.protocol)
    if pairing.replies_alone:
        report.count("reply_connections_unpaired", len(pairing.replies_alone))
    return report
