"""The assist loop's per-packet work, without sockets: every packet is dropped, records go to
the announcing connection in combined frames, early SYN-ACKs are parked, junk is counted."""

from nfreplay.engine.assist import AssistEngine
from nfreplay.proto import channel, tcpip
from nfreplay.proto.tcpip import ACK, PSH, SYN, ip2int
from nfreplay.routing import route_key

CLIENT, TARGET = ip2int("198.18.1.10"), ip2int("198.18.0.3")


class FakeConn:
    def __init__(self) -> None:
        self.out = bytearray()
        self.closed = False
        self.peer = "fake"

    def queue(self, data: bytes) -> None:
        self.out += data

    def flush(self) -> bool:
        return True


def reply(flags: int, port: int = 40000, plen: int = 0) -> bytes:
    return bytes(tcpip.build(TARGET, CLIENT, 80, port, 1000, 2000, flags, payload=b"p" * plen))


def engine() -> AssistEngine:
    return AssistEngine(listener=None)  # type: ignore[arg-type]


def frames(data: bytes) -> list[bytes]:
    return channel.FrameDecoder().feed(data)


def test_routed_replies_are_dropped_and_batched_to_their_connection() -> None:
    e = engine()
    conn = FakeConn()
    e.conns.append(conn)  # type: ignore[arg-type]
    e.router.add(route_key(CLIENT, 40000, TARGET, 80), conn, 0.0)
    for i in range(20):
        assert e.on_packet(reply(ACK | PSH, plen=100 + i)) is False
    e._send()
    records = frames(bytes(conn.out))
    assert len(records) == 20 and e.c.frames_sent == 2 and e.c.records_sent == 20
    assert tcpip.parse(records[5]).payload_len == 105  # the size travels, the payload does not
    assert int.from_bytes(conn.out[:2], "big") == 16  # combined: at most 16 per frame


def test_syn_ack_before_its_announcement_is_parked_then_delivered() -> None:
    e = engine()
    assert e.on_packet(reply(SYN | ACK)) is False
    assert e.c.records_parked == 1
    conn = FakeConn()
    e.conns.append(conn)  # type: ignore[arg-type]
    parked = e.router.add(route_key(CLIENT, 40000, TARGET, 80), conn, 0.0)
    assert len(parked) == 1 and tcpip.parse(parked[0]).flags == SYN | ACK


def test_unrouted_data_and_junk_are_dropped_and_counted() -> None:
    e = engine()
    assert e.on_packet(reply(ACK, plen=10)) is False
    assert e.on_packet(b"\x60" + bytes(59)) is False  # IPv6: not ours to parse
    assert e.c.records_unrouted == 1 and e.c.packets_bad == 1 and e.c.packets_queued == 2


def test_a_peer_with_another_version_is_logged_once_and_served(caplog) -> None:  # type: ignore[no-untyped-def]
    """Intercept accepts any version (it is advisory): a version-7 peer's CLIENT_ADD still
    routes its replies, and the mismatch is one warning, not a crash."""
    import socket

    from nfreplay.adapters.channel import Listener

    listener = Listener("127.0.0.1", 0)
    e = AssistEngine(listener)
    peer = socket.create_connection(listener.sock.getsockname())
    try:
        hello = bytes(6) + (7).to_bytes(2, "big") + bytes(6)
        add = channel.encode_client_add(CLIENT, 40000, TARGET, 80)
        peer.sendall(hello + add)
        for _ in range(50):
            e.step(0.05)
            if e.c.client_adds:
                break
        assert e.c.client_adds == 1 and len(e.conns) == 1
        peer.sendall(channel.encode_client_add(CLIENT, 40001, TARGET, 80))
        for _ in range(50):
            e.step(0.05)
            if e.c.client_adds == 2:
                break
        assert e.c.client_adds == 2
        assert e.on_packet(reply(ACK, plen=10)) is False
        e.step(0)
        peer.settimeout(2)
        got = channel.FrameDecoder().feed(peer.recv(4096))
        assert len(got) == 1 and tcpip.parse(got[0]).payload_len == 10
        warnings = [r for r in caplog.records if "version 7" in r.getMessage()]
        assert len(warnings) == 1
    finally:
        peer.close()
        e.shutdown()
