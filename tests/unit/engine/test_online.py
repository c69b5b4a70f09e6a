"""The online loop's per-frame work with fake adapters: link-layer offsets, Ethernet padding,
GRO-sized captures split to the MTU, no sessions while no control connection is up."""

from nfreplay.engine.online import OnlineEngine
from nfreplay.session.table import TIMER_GRAIN
from nfreplay.proto import channel, checksum, tcpip
from nfreplay.proto.tcpip import ACK, PSH, SYN, ip2int
from nfreplay.session.machine import Params
from tests.unit.engine.fakes import FakeAssistant, FakeSender

CLIENT, ONLINE, TARGET = ip2int("198.18.1.10"), ip2int("198.18.0.2"), ip2int("198.18.0.3")
ETH = bytes(12) + b"\x08\x00"


def engine(up: bool = True) -> tuple[OnlineEngine, FakeSender]:
    sender = FakeSender()
    e = OnlineEngine(Params(target_ip=TARGET, target_port=80), capture=None, sender=sender,
                     assistants=[FakeAssistant()], mtu=1500)  # type: ignore[list-item]
    e.channel_up = 1 if up else 0
    return e, sender


def frame(flags: int, seq: int, payload: bytes = b"", pad: int = 0) -> bytes:
    return ETH + bytes(tcpip.build(CLIENT, ONLINE, 40000, 80, seq, 9, flags,
                                   payload=payload)) + bytes(pad)


def establish(e: OnlineEngine) -> None:
    e._on_frame(frame(SYN, 100), 14)
    rec = channel.make_record(tcpip.build(TARGET, CLIENT, 80, 40000, 5000, 101, SYN | ACK))
    e._on_record(rec, e.now)
    e._emit()


def test_oversized_capture_is_sent_in_mtu_pieces() -> None:
    e, sender = engine()
    establish(e)
    sender.sent.clear()
    e._on_frame(frame(ACK | PSH, 101, bytes(4000)), 14)
    e._emit()
    sizes = [len(p) for p in sender.sent]
    assert sizes == [1500, 1500, 1120] and e.c.packets_split == 1
    assert all(checksum.verify(p) for p in sender.sent)
    assert [tcpip.parse(p).seq for p in sender.sent] == [101, 1561, 3021]


def test_ethernet_padding_is_stripped() -> None:
    e, sender = engine()
    e._on_frame(frame(SYN, 100, pad=6), 14)
    e._emit()
    (syn,) = sender.sent
    assert len(syn) == 40 and checksum.verify(syn)


def test_no_session_starts_without_a_control_connection() -> None:
    e, sender = engine(up=False)
    e._on_frame(frame(SYN, 100), 14)
    e._emit()
    assert sender.sent == [] and e.c.sessions_skipped_no_channel == 1


def test_truncated_capture_is_counted() -> None:
    e, sender = engine()
    e._on_frame(frame(ACK | PSH, 101, bytes(100))[:80], 14)
    assert e.c.packets_bad == 1 and sender.sent == []


def test_overload_sheds_new_sessions_and_lets_admitted_ones_go_on(caplog) -> None:  # type: ignore[no-untyped-def]
    """While the capture lags more than shed_lag, new SYNs are refused (counted, logged, and
    their later data does not join mid-stream); a session admitted before goes on; below half
    the limit new sessions are admitted again."""
    e, sender = engine()
    establish(e)  # admitted before the overload
    e._shed(0.75)
    assert e.table.shed
    for port in (40001, 40002):
        syn = ETH + bytes(tcpip.build(CLIENT, ONLINE, port, 80, 100, 0, SYN))
        e._on_frame(syn, 14)
    data = ETH + bytes(tcpip.build(CLIENT, ONLINE, 40001, 80, 101, 9, ACK | PSH, payload=b"x"))
    e._on_frame(data, 14)
    e._on_frame(frame(ACK | PSH, 101, b"GET / HTTP/1.1\r\n\r\n"), 14)
    e._emit()
    assert e.c.sessions_shed == 2 and e.c.sessions_opened == 1 and e.c.sessions_midstream == 0
    assert [tcpip.parse(p).payload_len for p in sender.sent][-1] == 18  # the admitted one goes on
    assert sum("overloaded" in r.getMessage() for r in caplog.records) == 1
    e._shed(0.3)  # under the limit, not yet under half of it: still shedding
    assert e.table.shed
    e._shed(0.2)
    assert not e.table.shed
    e._on_frame(ETH + bytes(tcpip.build(CLIENT, ONLINE, 40003, 80, 100, 0, SYN)), 14)
    assert e.c.sessions_opened == 2 and e.c.sessions_shed == 2


def test_pure_acks_take_the_fast_path_and_still_count() -> None:
    """A pure ACK is read in place: the session learns the window and its first ACK (the
    online server's ISN + 1, the base for greetings); nothing is sent. Without a session it
    takes the full path and is counted as belonging to none."""
    e, sender = engine()
    e._on_frame(frame(SYN, 100), 14)
    s = e.table.sessions[(CLIENT << 16) | 40000]
    ack = ETH + bytes(tcpip.build(CLIENT, ONLINE, 40000, 80, 101, 777, ACK, window=321))
    e._on_frame(ack, 14)
    assert (s.c_ack0, s.c_win) == (777, 321) and e.c.client_acks_absorbed == 1
    e._on_frame(ETH + bytes(tcpip.build(CLIENT, ONLINE, 40000, 80, 101, 900, ACK, window=5)), 14)
    assert (s.c_ack0, s.c_win) == (777, 5) and e.c.client_acks_absorbed == 2
    stray = ETH + bytes(tcpip.build(CLIENT, ONLINE, 40009, 80, 1, 2, ACK))
    e._on_frame(stray, 14)
    assert e.c.packets_no_session == 1 and e.c.packets_captured == 4
    e._emit()
    assert [tcpip.parse(p).flags for p in sender.sent] == [SYN]


def test_an_internal_error_is_counted_and_the_loop_goes_on(caplog) -> None:  # type: ignore[no-untyped-def]
    """A bug met on one packet or record (here: a table that raises) is counted and logged
    once per occurrence up to five; the next packet is handled normally."""
    e, sender = engine()

    class Broken:  # where the table expects a session: any use fails like a bug would
        def __getattr__(self, name: str) -> object:
            raise RuntimeError("bug")

    key = (CLIENT << 16) | 40000
    e.table.sessions[key] = Broken()  # type: ignore[assignment]
    rec = channel.make_record(tcpip.build(TARGET, CLIENT, 80, 40000, 5000, 101, SYN | ACK))
    for _ in range(7):
        e._on_record(rec, e.now)
    e._on_frame(frame(ACK, 101), 14)
    assert e.c.internal_errors == 8 and e.c.records_received == 7
    assert sum("internal error" in r.getMessage() for r in caplog.records) == 5
    del e.table.sessions[key]
    e._on_frame(frame(SYN, 100), 14)
    e._emit()
    assert [tcpip.parse(p).flags for p in sender.sent] == [SYN]


def test_a_syn_whose_announcement_failed_waits_for_the_next_try() -> None:
    """Without a queued CLIENT_ADD the target's SYN-ACK would reach no one: the SYN is held
    (counted) and the SYN timer announces the session again with its retry."""
    e, sender = engine()
    assistant = e.assistants[0]
    assistant.up = False  # type: ignore[attr-defined]
    e._on_frame(frame(SYN, 100), 14)
    e._emit()
    assert sender.sent == [] and e.c.syns_unannounced == 1 and e.announces_failed == 1
    assistant.up = True  # type: ignore[attr-defined]
    e.now += 1.0 + TIMER_GRAIN  # the SYN's 1 s timer (timers fire up to a grain late)
    e.table.tick(e.now, e.out)
    e._emit()
    assert len(assistant.announced) == 1  # type: ignore[attr-defined]
    assert [tcpip.parse(p).flags for p in sender.sent] == [SYN]

