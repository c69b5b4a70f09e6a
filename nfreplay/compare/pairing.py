"""Which target connections replayed which production connection, through the session map.

* A production connection (client, server) takes the session lines with the same client and
  server whose ``start`` is nearest to its SYN without being after it (``TOLERANCE`` allows
  for the rounding of the two timestamps: both are the online host's clock). Copies share a
  ``start``: each line is one copy.
* A copy's connections to the target are those from its ``sent_client`` to its ``target``
  that began at or after its ``start`` and before the next line with the same
  ``sent_client`` and ``target`` began (reconnections after a target RST are new connections
  of the same copy). Both times are on the online host's clock.
* Each connection to the target is matched with the target's reply connection whose SYN-ACK
  acknowledges its SYN (no clock involved: the assistant's clock is another host's); what no
  SYN-ACK matches is matched in order.

Invariants: pure; every connection ends up in exactly one pair or one ``*_alone`` list.
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from dataclasses import dataclass, field

from nfreplay.compare.reassembly import Connection
from nfreplay.proto.recording import Endpoint, SessionLine
from nfreplay.proto.seq import seq_add

__all__ = ["TOLERANCE", "CopyPair", "Pairing", "pair"]

#: Seconds a session line's ``start`` may be after the production SYN it describes.
TOLERANCE = 0.001


@dataclass(slots=True)
class CopyPair:
    """One copy of one production session: the connections sent to the target and, for each,
    the target's replies (None: none captured)."""

    line: SessionLine
    production: Connection | None
    sent: list[Connection] = field(default_factory=list)
    replies: list[Connection | None] = field(default_factory=list)


@dataclass(slots=True)
class Pairing:
    pairs: list[CopyPair] = field(default_factory=list)
    production_alone: list[Connection] = field(default_factory=list)
    sent_alone: list[Connection] = field(default_factory=list)
    replies_alone: list[Connection] = field(default_factory=list)


def pair(
    production: list[Connection],
    sent: list[Connection],
    replies: list[Connection],
    lines: list[SessionLine],
) -> Pairing:
    """Pair the three captures' connections through the session lines (see the module)."""
    out = Pairing()
    # production connections <- lines
    by_session: dict[tuple[Endpoint, Endpoint], list[SessionLine]] = defaultdict(list)
    for line in lines:
        by_session[(line.client, line.server)].append(line)
    for group in by_session.values():
        group.sort(key=lambda ln: (ln.start, ln.copy))
    claimed: set[tuple[Endpoint, Endpoint, float]] = set()
    pairs_of: dict[tuple[Endpoint, Endpoint, float], list[CopyPair]] = {}
    for conn in sorted(production, key=lambda c: c.start_ts):
        group = by_session.get((conn.client, conn.server), [])
        starts = [ln.start for ln in group]
        i = bisect.bisect_right(starts, conn.start_ts + TOLERANCE) - 1
        if i < 0 or (conn.client, conn.server, starts[i]) in claimed:
            out.production_alone.append(conn)
            continue
        start = starts[i]
        claimed.add((conn.client, conn.server, start))
        pairs_of[(conn.client, conn.server, start)] = [
            CopyPair(ln, conn) for ln in group if ln.start == start
        ]
    for line in lines:
        key = (line.client, line.server, line.start)
        if key not in claimed:
            pairs_of[key] = [
                CopyPair(ln, None) for ln in by_session[key[:2]] if ln.start == key[2]
            ]
            claimed.add(key)
    all_pairs = [p for ps in pairs_of.values() for p in ps]
    all_pairs.sort(key=lambda p: (p.line.start, p.line.client, p.line.copy))
    out.pairs = all_pairs

    # copies <- connections sent to the target
    by_sent: dict[tuple[Endpoint, Endpoint], list[CopyPair]] = defaultdict(list)
    for p in all_pairs:
        by_sent[(p.line.sent_client, p.line.target)].append(p)
    for group2 in by_sent.values():
        group2.sort(key=lambda p: p.line.start)
    for conn in sorted(sent, key=lambda c: c.first_ts):
        group2 = by_sent.get((conn.client, conn.server), [])
        starts = [p.line.start for p in group2]
        i = bisect.bisect_right(starts, conn.first_ts + TOLERANCE) - 1
        if i < 0:
            out.sent_alone.append(conn)
        else:
            group2[i].sent.append(conn)

    # connections sent <- the target's replies
    waiting: dict[tuple[Endpoint, Endpoint], list[Connection]] = defaultdict(list)
    for conn in sorted(replies, key=lambda c: c.first_ts):
        waiting[(conn.client, conn.server)].append(conn)
    for p in all_pairs:
        p.replies = [None] * len(p.sent)
        for k, conn in enumerate(p.sent):
            pool = waiting.get((conn.client, conn.server), [])
            isn = conn.to_server.isn
            for j, r in enumerate(pool):
                if isn is not None and r.to_client.syn_ack == seq_add(isn, 1):
                    p.replies[k] = pool.pop(j)
                    break
    for p in all_pairs:  # what no SYN-ACK matched, in order
        for k, conn in enumerate(p.sent):
            pool = waiting.get((conn.client, conn.server), [])
            if p.replies[k] is None and pool:
                p.replies[k] = pool.pop(0)
    out.replies_alone = [c for pool in waiting.values() for c in pool]
    return out
