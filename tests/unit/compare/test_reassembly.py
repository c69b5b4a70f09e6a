"""Reassembly: retransmissions, reordering, overlaps, gaps, sequence wrap, port reuse; and
what they do to a comparison."""

from __future__ import annotations

import random
from typing import Any

from nfreplay.compare.comparison import compare_captures
from nfreplay.compare.diff import Options
from nfreplay.compare.reassembly import Stream, connections
from nfreplay.compare.report import to_dict
from nfreplay.proto.tcpip import ACK, FIN, PSH, SYN

from .recorder import SERVER, TARGET, Recording, http_get, http_ok, pkt

C = ("198.18.1.2", 40000)


def stream(
    parts: list[tuple[int, bytes]], isn: int | None = 100, fin: int | None = None
) -> Stream:
    s = Stream()
    if isn is not None:
        s.add(isn, SYN, b"", 1.0, None)
    for i, (seq, data) in enumerate(parts):
        s.add(seq, ACK | PSH, data, 2.0 + i, 5)
    if fin is not None:
        s.add(fin, FIN | ACK, b"", 9.0, 5)
    return s


def test_in_order_out_of_order_duplicates_and_overlaps_give_the_same_bytes() -> None:
    parts = [(101, b"hello "), (107, b"wor"), (110, b"ld")]
    want = stream(parts).assemble()
    assert (want.data, want.gaps, want.duplicates) == (b"hello world", (), 0)
    mixed = [
        (110, b"ld"),
        (101, b"hello "),
        (104, b"lo wo"),
        (107, b"wor"),
        (101, b"hel"),
    ]
    got = stream(mixed).assemble()
    assert got.data == b"hello world" and got.gaps == () and got.conflicts == 0
    assert got.duplicates == 3 + 2 + 3  # 'lo ', 'wo', 'hel'
    # the first packet that carried a byte gives its time
    assert got.time_at(0) == 3.0 and got.time_at(9) == 2.0 and got.time_at(6) == 4.0


def test_conflicting_retransmission_keeps_the_first_copy_and_counts() -> None:
    got = stream([(101, b"abc"), (101, b"xyz")]).assemble()
    assert (got.data, got.conflicts) == (b"abc", 3)


def test_gaps_are_reported_never_filled() -> None:
    got = stream([(101, b"aaaa"), (109, b"cccc"), (117, b"e")], fin=118).assemble()
    assert got.data == b"aaaa"
    assert got.gaps == ((4, 8), (12, 16))
    assert got.end == 17 and got.missing == 8
    tail = stream([(101, b"aa")], fin=110).assemble()
    assert tail.gaps == ((2, 9),)  # bytes missing before the FIN


def test_sequence_numbers_wrap_around() -> None:
    isn = 2**32 - 5
    data = bytes(range(256)) * 40
    parts = [
        ((isn + 1 + i) % 2**32, data[i : i + 1000]) for i in range(0, len(data), 1000)
    ]
    random.Random(3).shuffle(parts)
    got = stream(parts, isn=isn).assemble()
    assert got.data == data and got.gaps == () and got.base_seq == (isn + 1) % 2**32


def test_without_a_syn_the_lowest_sequence_number_starts_the_stream() -> None:
    got = stream([(5000, b"bb"), (4998, b"aa")], isn=None).assemble()
    assert got.data == b"aabb" and not got.syn


def test_a_late_syn_joins_its_data_and_a_new_isn_starts_a_new_connection() -> None:
    frames = [
        (1.0, pkt(C, SERVER, 101, 1, ACK | PSH, b"x")),
        (1.1, pkt(C, SERVER, 100, 0, SYN)),  # reordered: same connection
        (2.0, pkt(C, SERVER, 900, 0, SYN)),  # port reused
        (2.1, pkt(C, SERVER, 901, 1, ACK | PSH, b"y")),
        (2.2, pkt(SERVER, C, 50, 901, SYN | ACK)),
    ]
    cap = connections(frames, {SERVER})
    assert [c.to_server.assemble().data for c in cap.connections] == [b"x", b"y"]
    assert cap.connections[1].to_client.isn == 50
    assert connections([(0.0, b"garbage")], set()).bad_packets == 1


def run(rec: Recording) -> dict[str, Any]:
    return to_dict(
        compare_captures(rec.production, rec.sent, rec.replies, rec.lines, Options())
    )


def two_paths() -> Recording:
    rec = Recording()
    rec.session([(http_get("/a"), http_ok(b"A" * 3000), http_ok(b"A" * 3000)),
                 (http_get("/diff"), http_ok(b"B" * 3000), http_ok(b"C" * 3000)),
                 (http_get("/a"), http_ok(b"A" * 3000), http_ok(b"A" * 3000))], mss=500)  # fmt: skip
    return rec


def counts(d: dict[str, Any]) -> dict[str, tuple[int, int, int, int]]:
    return {e["endpoint"]: (e["identical"], e["different"], e["unpaired"], e["gaps"])
            for e in d["endpoints"]}  # fmt: skip


def test_retransmitted_and_reordered_captures_compare_like_clean_ones() -> None:
    clean = counts(run(two_paths()))
    assert clean == {"GET /a": (2, 0, 0, 0), "GET /diff": (0, 1, 0, 0)}
    rng = random.Random(7)
    for _ in range(5):
        rec = two_paths()
        for name in ("production", "sent", "replies"):
            pkts: list[tuple[float, bytes]] = getattr(rec, name)
            pkts += rng.sample(pkts, len(pkts) // 3)  # retransmissions (later copies)
            # reordering: swap neighbours
            for i in range(0, len(pkts) - 1, 3):
                pkts[i], pkts[i + 1] = pkts[i + 1], pkts[i]
        assert counts(run(rec)) == clean


def test_a_gap_in_the_targets_reply_is_a_gap_not_a_difference() -> None:
    rec = two_paths()
    # drop a data packet in the middle of the target's first response
    data = [i for i, (_, p) in enumerate(rec.replies) if len(p) > 100]
    del rec.replies[data[2]]
    d = run(rec)
    c = counts(d)
    assert (
        c["GET /a"][1] == 0 and c["GET /diff"][1] == 0
    )  # nothing guessed as different
    assert sum(v[3] for v in c.values()) >= 1
    assert d["sessions"]["gap_ranges"] == 1 and d["sessions"]["gap_bytes"] == 500
    assert d["totals"]["exchanges"] == sum(
        d["totals"][k] for k in ("identical", "different", "unpaired", "gaps")
    )


def test_a_gap_in_production_requests() -> None:
    rec = Recording()
    rec.session([(http_get("/a" + "x" * 1000), http_ok(b"1"), http_ok(b"1")),
                 (http_get("/b"), http_ok(b"2"), http_ok(b"2"))], mss=300)  # fmt: skip
    first_data = next(i for i, (_, p) in enumerate(rec.production) if len(p) > 300)
    del rec.production[first_data + 1]
    d = run(rec)
    assert d["totals"]["different"] == 0 and d["totals"]["gaps"] >= 1
    assert d["sessions"]["gap_ranges"] == 1


def test_target_replies_matched_by_syn_ack_even_when_captured_out_of_order() -> None:
    rec = Recording()
    for i in range(3):
        body = b"%d" % i
        rec.session([(http_get(f"/p{i}"), http_ok(body), http_ok(body))], start=1_700_000_000 + i * 0.02,
                    isn=1000 + i * 100_000)  # fmt: skip
    # connections in another order (each in its own order), on a clock 10 s behind
    n = len(rec.replies) // 3
    chunks = [rec.replies[i * n : (i + 1) * n] for i in range(3)]
    rec.replies = [(ts - 10, p) for chunk in reversed(chunks) for ts, p in chunk]
    d = run(rec)
    assert d["totals"]["identical"] == 3 and d["totals"]["unpaired"] == 0
    assert all(ln.target == TARGET for ln in rec.lines)
