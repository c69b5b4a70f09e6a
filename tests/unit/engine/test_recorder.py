"""The response recorders (pure: a fake sink) and the recording directory (a temp dir)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from nfreplay.adapters.recordfiles import RecordingDirectory
from nfreplay.engine.recorder import (
    HOLD_BYTES,
    HOLD_SECONDS,
    RECORD_SEED,
    AssistRecorder,
    OnlineRecorder,
)
from nfreplay.proto import tcpip
from nfreplay.proto.pcapfile import open_capture
from nfreplay.proto.recording import decode_line, parse_file_name
from nfreplay.proto.tcpip import ACK, FIN, PSH, RST, SYN, ip2int
from nfreplay.session.counters import Counters
from nfreplay.session.machine import Params, Session
from nfreplay.session.sampling import Sampler

CLIENT, SERVER, TARGET = ip2int("198.18.1.10"), ip2int("198.18.0.2"), ip2int("198.18.0.3")
POOL = ip2int("198.18.4.7")


class Sink:
    def __init__(self) -> None:
        self.packets: list[tuple[str, float, bytes]] = []
        self.lines: list[str] = []

    def packet(self, kind: str, ts: float, ip: bytes) -> None:
        self.packets.append((kind, ts, ip))

    def line(self, text: str) -> None:
        self.lines.append(text)

    def kinds(self) -> list[str]:
        return [k for k, _, _ in self.packets]


def pkt(src: int, sport: int, dst: int, dport: int, flags: int, seq: int = 1000,
        payload: bytes = b"") -> bytes:
    return bytes(tcpip.build(src, dst, sport, dport, seq, 0, flags, payload=payload))


def session(port: int = 40000, *, sent: tuple[int, int] | None = None, copy: int = 0,
            isn: int = 1000) -> Session:
    """A session replaying the production connection from CLIENT:port whose SYN had `isn`."""
    ip, sport = sent or (CLIENT, port)
    s = Session(Params(target_ip=TARGET, target_port=80), Counters(), ip, sport, 0.0,
                source=(CLIENT, port), copy=copy)
    s.isn = isn
    return s


def recorder(sink: Sink, sampler: Sampler | None = None) -> OnlineRecorder:
    return OnlineRecorder([(SERVER, 80, TARGET, 80)], sink, sampler)


def test_a_replayed_session_is_recorded_both_ways_and_its_sent_packets() -> None:
    sink = Sink()
    r = recorder(sink)
    syn = pkt(CLIENT, 40000, SERVER, 80, SYN)
    r.packet(100.0, syn)  # before the engine decided: held
    r.packet(100.001, pkt(SERVER, 80, CLIENT, 40000, SYN | ACK))
    assert sink.packets == []
    s = session()
    r.announce(s, 100.002)
    r.announce(s, 100.003)  # a repeated SYN: one line
    assert [decode_line(x).start for x in sink.lines] == [100.0]
    (line,) = [decode_line(x) for x in sink.lines]
    assert (line.client, line.server, line.sent_client, line.target, line.copy) == (
        ("198.18.1.10", 40000), ("198.18.0.2", 80), ("198.18.1.10", 40000),
        ("198.18.0.3", 80), 0)
    assert sink.kinds() == ["production", "production"] and sink.packets[0][2] == syn
    r.packet(100.004, pkt(CLIENT, 40000, TARGET, 80, SYN))  # what the engine sent
    r.packet(100.005, pkt(CLIENT, 40000, SERVER, 80, ACK | PSH, 1001, b"GET / HTTP/1.1\r\n\r\n"))
    r.packet(100.006, pkt(CLIENT, 40001, SERVER, 80, SYN))  # another client, never replayed
    assert sink.kinds() == ["production"] * 2 + ["to-target", "production"]


def test_a_line_waits_for_its_connection_and_copies_share_a_start() -> None:
    sink = Sink()
    r = recorder(sink)
    copies = [session(sent=(POOL, 5000 + n), copy=n) for n in range(2)]
    for s in copies:
        r.announce(s, 50.0)  # the engine was first this time
    assert sink.lines == []
    r.packet(49.999, pkt(CLIENT, 40000, SERVER, 80, SYN))
    lines = [decode_line(x) for x in sink.lines]
    assert [(ln.sent_client, ln.copy, ln.start) for ln in lines] == [
        (("198.18.4.7", 5000), 0, 49.999), (("198.18.4.7", 5001), 1, 49.999)]
    r.packet(50.01, pkt(POOL, 5001, TARGET, 80, SYN))
    assert sink.kinds() == ["production", "to-target"]


def test_a_line_whose_connection_never_shows_is_written_with_the_announce_time() -> None:
    sink = Sink()
    r = recorder(sink)
    r.announce(session(), 70.0)
    r.tick(70.0 + HOLD_SECONDS - 0.1)
    assert sink.lines == []
    r.tick(70.0 + HOLD_SECONDS)
    (line,) = [decode_line(x) for x in sink.lines]
    assert line.start == 70.0 and line.server == ("198.18.0.2", 80)


def test_held_packets_are_bounded_and_expire() -> None:
    sink = Sink()
    r = recorder(sink)
    r.packet(10.0, pkt(CLIENT, 40000, SERVER, 80, SYN))
    big = pkt(SERVER, 80, CLIENT, 40000, ACK, payload=b"x" * 1400)
    for i in range(HOLD_BYTES // len(big) + 10):
        r.packet(10.0 + i * 1e-6, big)
    assert r.held_dropped > 0 and r.held_bytes <= HOLD_BYTES
    r.tick(10.1 + HOLD_SECONDS)  # never decided: forgotten
    assert r.conns == {} and r.held_bytes == 0 and sink.packets == []
    # A new connection on the same port (another ISN) starts afresh; its old held bytes go.
    r.packet(20.0, pkt(CLIENT, 40000, SERVER, 80, SYN, seq=1))
    r.packet(20.0, big)
    r.packet(20.1, pkt(CLIENT, 40000, SERVER, 80, SYN, seq=999))
    assert r.held_bytes == len(pkt(CLIENT, 40000, SERVER, 80, SYN, seq=999))
    r.announce(session(isn=999), 20.2)
    assert decode_line(sink.lines[0]).start == 20.1 and len(sink.packets) == 1


def test_record_percent_chooses_by_the_address_the_target_sees() -> None:
    sampler = Sampler(30, seed=RECORD_SEED)
    sink = Sink()
    r = recorder(sink, sampler)
    kept = 0
    for port in range(20000, 22000):
        s = session(port)
        r.packet(1.0, pkt(CLIENT, port, SERVER, 80, SYN))
        r.announce(s, 1.0)
        kept += sampler.keep(CLIENT, port, 1.0)
    assert len(sink.lines) == kept == 2000 - r.not_sampled
    assert 500 < kept < 700  # about 30 %


def test_the_assist_records_known_replies_in_full_and_never_changes_a_verdict() -> None:
    sink = Sink()
    known = {tcpip_key(CLIENT, 40000), tcpip_key(CLIENT, 40002)}  # routed, or parked
    verdicts = [False] * 4 + [True]

    def on_packet(payload: bytes) -> bool:
        if payload.startswith(b"\x45boom"):
            raise RuntimeError("a bug in the verdict path")
        return verdicts.pop(0) if verdicts else False

    r = AssistRecorder(on_packet, lambda key: key in known, sink, clock=lambda: 5.0)
    reply = pkt(TARGET, 80, CLIENT, 40000, ACK | PSH, payload=b"HTTP/1.1 200 OK\r\n\r\n")
    assert r(reply) is False
    assert r(pkt(TARGET, 80, CLIENT, 40001, ACK | FIN)) is False  # not announced: not kept
    assert r(pkt(TARGET, 80, CLIENT, 40002, SYN | ACK)) is False  # parked: kept
    assert r(pkt(TARGET, 80, CLIENT, 40003, RST)) is False  # a RST to no one: not kept
    assert r(reply) is True  # whatever the verdict, it is passed on unchanged
    assert r(b"\x45garbage") is False and r.errors == 1  # bad bytes: counted
    with pytest.raises(RuntimeError):  # the verdict path's own errors are not swallowed
        r(b"\x45boom")  # (NFQUEUE's Verdicts wrapper drops the packet)
    assert [p for _, _, p in sink.packets] == [reply, sink.packets[1][2], reply]
    assert tcpip.parse(sink.packets[1][2]).dport == 40002 and r.truncated == 0
    r(reply[:45])  # the queue copied only part of it
    assert r.truncated == 1


def tcpip_key(client: int, port: int) -> int:
    from nfreplay.engine.routing import route_key

    return route_key(client, port, TARGET, 80)


# ------------------------------------------------------------------ the directory


def test_directory_writes_readable_files_and_continues_after_a_restart(tmp_path: Path) -> None:
    d = RecordingDirectory(str(tmp_path), ["production", "sessions"], 1 << 20, 4 << 20)
    p = pkt(CLIENT, 40000, SERVER, 80, SYN)
    d.packet("production", 1_700_000_000.5, p)
    d.line('{"x": 1}\n')
    d.close()
    assert sorted(os.listdir(tmp_path)) == ["production-000001.pcapng", "sessions-000001.jsonl"]
    with open_capture(tmp_path / "production-000001.pcapng") as cap:
        (frame,) = list(cap)
    assert frame.ip == p and abs(frame.ts - 1_700_000_000.5) < 1e-6
    again = RecordingDirectory(str(tmp_path), ["production", "sessions"], 1 << 20, 4 << 20)
    again.line("{}\n")
    again.close()
    assert (tmp_path / "sessions-000002.jsonl").read_text() == "{}\n"


def test_directory_rotates_together_and_caps_the_total(tmp_path: Path) -> None:
    d = RecordingDirectory(str(tmp_path), ["production", "sessions"], 1 << 20, 3 << 20)
    big = pkt(CLIENT, 40000, SERVER, 80, ACK, payload=b"y" * 1400)
    for i in range(6000):  # about 8.6 MB: several rotations
        d.packet("production", 1e9 + i, big)
        if i % 500 == 0:
            d.line("{}\n")
        if i % 1000 == 999:
            deadline = time.monotonic() + 10  # let the writer catch up: no queue drops
            while d.queued_bytes_in > d.queued_bytes_out and time.monotonic() < deadline:
                time.sleep(0.01)
    d.close()
    assert d.dropped == 0 and d.errors == 0
    found = sorted(f for f in (parse_file_name(n) for n in os.listdir(tmp_path)) if f)
    seqs = sorted({s for _, s in found})
    assert seqs[0] > 1 and d.deleted > 0  # the oldest went
    total = sum(f.stat().st_size for f in tmp_path.iterdir())
    assert total <= (3 << 20) + (1 << 20) + 4096  # the cap, plus the file being written
    assert {k for k, s in found if s == seqs[0]} == {"production", "sessions"}


def test_directory_refuses_what_it_cannot_write(tmp_path: Path) -> None:
    from nfreplay.errors import HostError

    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(HostError, match=r"^online.record_responses .*file/sub: "):
        RecordingDirectory(str(blocker / "sub"), ["production"], 1 << 20, 4 << 20,
                           key="online.record_responses")


def test_a_full_queue_drops_and_counts_instead_of_waiting(tmp_path: Path) -> None:
    d = RecordingDirectory(str(tmp_path), ["production"], 1 << 20, 4 << 20, max_queued=1000)
    d.queued_bytes_out = -(10**9)  # as if the writer were stuck far behind
    d.packet("production", 1.0, b"x" * 100)
    assert d.dropped == 1 and d.packets == 0
    d.queued_bytes_out = 0
    d.close()


def test_both_sides_record_the_same_copies_for_the_same_percent() -> None:
    """The contract that lets `compare` pair them: the online host's session lines and the
    assistant's replies cover the same sent clients."""
    from nfreplay.cli.recording_options import recording_sampler

    online_sink, assist_sink = Sink(), Sink()
    online = recorder(online_sink, recording_sampler(25))
    assist = AssistRecorder(lambda payload: False, lambda key: True, assist_sink,
                            recording_sampler(25), clock=lambda: 1.0)
    for port in range(30000, 32000):
        online.packet(1.0, pkt(CLIENT, port, SERVER, 80, SYN))
        online.announce(session(port, sent=(POOL, port)), 1.0)
        assist(pkt(TARGET, 80, POOL, port, ACK))
    lines = {decode_line(x).sent_client[1] for x in online_sink.lines}
    replies = {tcpip.parse(p).dport for _, _, p in assist_sink.packets}
    assert lines == replies and 350 < len(lines) < 650
    assert recording_sampler(100) is None


def test_a_reused_port_binds_the_line_to_the_new_connection_not_the_old() -> None:
    sink = Sink()
    r = recorder(sink)
    r.packet(1.0, pkt(CLIENT, 40000, SERVER, 80, SYN, seq=1))
    r.announce(session(isn=1), 1.0)  # the old connection, recorded
    # The engine sees the client's next connection (another ISN) before this capture does.
    r.announce(session(isn=5000), 9.0)
    assert [decode_line(x).start for x in sink.lines] == [1.0]
    r.packet(9.001, pkt(CLIENT, 40000, SERVER, 80, SYN, seq=5000))
    assert [decode_line(x).start for x in sink.lines] == [1.0, 9.001]
    assert sink.kinds() == ["production", "production"]  # both SYNs, each in its own time


def test_open_connections_stay_recorded_closed_ones_and_finished_copies_go() -> None:
    from nfreplay.engine.recorder import IDLE, LINGER

    sink = Sink()
    r = recorder(sink)
    s = session()
    r.packet(0.0, pkt(CLIENT, 40000, SERVER, 80, SYN))
    r.announce(s, 0.0)
    r.tick(900.0)  # a keep-alive connection idle for 15 minutes is still replayed
    r.packet(900.0, pkt(CLIENT, 40000, SERVER, 80, ACK | PSH, payload=b"GET /late HTTP/1.1\r\n\r\n"))
    r.packet(900.0, pkt(CLIENT, 40000, TARGET, 80, ACK | PSH, payload=b"GET /late HTTP/1.1\r\n\r\n"))
    assert sink.kinds()[-2:] == ["production", "to-target"]
    r.packet(901.0, pkt(CLIENT, 40000, SERVER, 80, FIN | ACK))
    s.done = True
    r.tick(900.0 + LINGER - 1)
    assert r.conns and r.sent
    r.tick(901.0 + LINGER)
    assert not r.conns and not r.sent
    assert IDLE > 600  # longer than online.keepalive_timeout's default


def test_the_sweep_reaches_every_entry_however_many() -> None:
    from nfreplay.engine.recorder import SWEEP

    r = recorder(Sink())
    for port in range(SWEEP * 2 + 10):
        r.packet(0.0, pkt(CLIENT, port, SERVER, 80, SYN))
    r.tick(HOLD_SECONDS)
    assert len(r.conns) == SWEEP + 10  # one tick looks at SWEEP of them
    r.tick(HOLD_SECONDS + 1)
    r.tick(HOLD_SECONDS + 2)
    assert not r.conns and r.held_bytes == 0


def test_a_line_without_its_connection_names_its_own_service() -> None:
    sink = Sink()
    r = OnlineRecorder([(SERVER, 80, TARGET, 80), (None, 5432, TARGET, 5433)], sink)
    s = Session(Params(target_ip=TARGET, target_port=80), Counters(), CLIENT, 40000, 0.0,
                target=(TARGET, 5433))
    r.announce(s, 1.0)
    r.tick(1.0 + HOLD_SECONDS)
    assert decode_line(sink.lines[0]).server == ("0.0.0.0", 5432)


def test_files_are_private_and_two_writers_never_share_one(tmp_path: Path) -> None:
    import stat

    a = RecordingDirectory(str(tmp_path), ["sessions"], 1 << 20, 4 << 20)
    b = RecordingDirectory(str(tmp_path), ["sessions"], 1 << 20, 4 << 20)  # same sequence
    a.line("a\n")
    a.close()
    b.line("b\n")
    b.close()
    files = sorted(tmp_path.iterdir())
    assert [f.read_text() for f in files] == ["a\n", "b\n"]  # b moved to the next sequence
    assert all(stat.S_IMODE(f.stat().st_mode) == 0o640 for f in files)
    (tmp_path / "sessions-000009.jsonl").symlink_to(tmp_path / "elsewhere")
    c = RecordingDirectory(str(tmp_path), ["sessions"], 1 << 20, 4 << 20)
    assert c.seq == 10  # after the highest name, a link included; never written through
    c.close()
