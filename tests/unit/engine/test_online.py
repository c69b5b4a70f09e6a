"""The online loop's per-frame work with fake adapters: link-layer offsets, Ethernet padding,
GRO-sized captures split to the MTU, no sessions while no control connection is up."""

from nfreplay.engine.online import OnlineEngine
from nfreplay.proto import channel, checksum, tcpip
from nfreplay.proto.tcpip import ACK, PSH, SYN, ip2int
from nfreplay.session.machine import Params

CLIENT, ONLINE, TARGET = ip2int("198.18.1.10"), ip2int("198.18.0.2"), ip2int("198.18.0.3")
ETH = bytes(12) + b"\x08\x00"


class FakeSender:
    def __init__(self) -> None:
        self.sent: list[bytes] = []

    def send(self, pkt: bytes, dst: str) -> bool:
        assert dst == "198.18.0.3"
        self.sent.append(bytes(pkt))
        return True


def engine(up: bool = True) -> tuple[OnlineEngine, FakeSender]:
    sender = FakeSender()
    e = OnlineEngine(Params(target_ip=TARGET, target_port=80), capture=None, sender=sender,
                     assistants=[], mtu=1500)
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
