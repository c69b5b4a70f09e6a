"""The assist loop's per-packet work, without sockets: every packet is dropped, records go to
the announcing connection in combined frames, early SYN-ACKs are parked, junk is counted."""

from nfreplay.engine.assist import AssistEngine
from nfreplay.proto import channel, tcpip
from nfreplay.proto.tcpip import ACK, PSH, SYN, ip2int
from nfreplay.engine.routing import route_key

CLIENT, TARGET = ip2int("198.18.1.10"), ip2int("198.18.0.3")


class FakeConn:
    """Takes what is queued at once (`sent`)."""

    def __init__(self) -> None:
        self.out = bytearray()
        self.sent = bytearray()
        self.closed = False
        self.writing = False
        self.peer = "fake"

    def queue(self, data: bytes) -> None:
        self.out += data

    def flush(self, limit: int = 0) -> bool:
        self.sent += self.out
        self.out.clear()
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
    records = frames(bytes(conn.sent))
    assert len(records) == 20 and e.c.frames_sent == 2 and e.c.records_sent == 20
    assert tcpip.parse(records[5]).payload_len == 105  # the size travels, the payload does not
    assert int.from_bytes(conn.sent[:2], "big") == 16  # combined: at most 16 per frame


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


# -- the control channel under hostile peers (real loopback sockets, a fake clock) ----------
class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def hostile_engine(**limits: object) -> tuple[AssistEngine, Clock, tuple[str, int]]:
    from nfreplay.adapters.channel import Listener
    from nfreplay.engine.assist import Limits

    listener = Listener("127.0.0.1", 0)
    clock = Clock()
    e = AssistEngine(listener, clock=clock, limits=Limits(**limits))  # type: ignore[arg-type]
    return e, clock, listener.sock.getsockname()


def until(e: AssistEngine, cond, steps: int = 50) -> bool:  # type: ignore[no-untyped-def]
    for _ in range(steps):
        e.step(0.02)
        if cond():
            return True
    return False


def hello() -> bytes:
    return channel.encode_version()


def test_a_peer_outside_assist_online_is_refused_and_said_once(caplog) -> None:  # type: ignore[no-untyped-def]
    import ipaddress
    import socket

    from nfreplay.adapters.channel import Listener

    listener = Listener("127.0.0.1", 0)
    e = AssistEngine(listener, allowed=[ipaddress.IPv4Network("198.18.0.2/32")])
    socks = [socket.create_connection(listener.sock.getsockname()) for _ in range(3)]
    try:
        assert until(e, lambda: e.c.connections_refused == 3)
        assert e.conns == [] and e.c.connections_accepted == 0
        lines = [r for r in caplog.records if "refused 127.0.0.1" in r.getMessage()]
        assert len(lines) == 1 and "assist.online" in lines[0].getMessage()
    finally:
        for s in socks:
            s.close()
        e.shutdown()


def test_a_session_announced_by_another_connection_stays_with_its_owner() -> None:
    import socket

    e, _, addr = hostile_engine()
    owner, rogue = socket.create_connection(addr), socket.create_connection(addr)
    try:
        add = channel.encode_client_add(CLIENT, 40000, TARGET, 80)
        owner.sendall(hello() + add)
        assert until(e, lambda: e.c.client_adds == 1)
        rogue.sendall(hello() + add)
        assert until(e, lambda: e.c.announces_refused == 1)
        e.on_packet(reply(ACK, plen=10))
        e.step(0)
        owner.settimeout(2)
        assert len(channel.FrameDecoder().feed(owner.recv(4096))) == 1
        rogue.setblocking(False)
        try:
            assert rogue.recv(4096) == b""
        except BlockingIOError:
            pass  # nothing for the rogue: as it should be
        owner.close()  # its routes go with it: the session may be announced afresh
        assert until(e, lambda: len(e.conns) == 1)
        rogue.sendall(add)
        assert until(e, lambda: e.c.client_adds == 3) and e.c.announces_refused == 1
    finally:
        owner.close()
        rogue.close()
        e.shutdown()


def test_stalled_and_excess_connections_are_closed_and_counted() -> None:
    import socket

    e, clock, addr = hostile_engine(connections_per_peer=3, stall=5.0)
    silent = socket.create_connection(addr)  # never says its version
    half = socket.create_connection(addr)  # version, then half a message
    fine = socket.create_connection(addr)  # version, then idle: a quiet tcpcopy
    extra = socket.create_connection(addr)  # the 4th from this peer
    try:
        half.sendall(hello() + b"\x00\x01\x02")
        fine.sendall(hello())
        assert until(e, lambda: len(e.conns) == 3 and e.c.connections_refused == 1)
        assert until(e, lambda: all(c.decoder.greeted  # type: ignore[attr-defined]
                                    for c in e.conns if c.decoder.buffered))  # type: ignore[attr-defined]
        clock.t += 6.0
        assert until(e, lambda: e.c.connections_stalled == 2)
        assert len(e.conns) == 1  # the idle but complete one stays
    finally:
        for s in (silent, half, fine, extra):
            s.close()
        e.shutdown()


def test_out_of_descriptors_backs_off_instead_of_spinning() -> None:
    import errno
    import resource
    import socket

    e, clock, addr = hostile_engine()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    held: list[socket.socket] = []
    try:
        peer = socket.create_connection(addr)
        held.append(peer)
        # Use up every descriptor, so that accept() fails with EMFILE.
        resource.setrlimit(resource.RLIMIT_NOFILE, (64, hard))
        try:
            while True:
                held.append(socket.socket())
        except OSError as exc:
            assert exc.errno == errno.EMFILE
        for _ in range(20):
            e.step(0.01)
        assert e.c.accept_errors == 1  # once: the listener rests instead of waking us again
        clock.t += 1.5
        for s in held[1:]:
            s.close()
        del held[1:]
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        assert until(e, lambda: e.c.connections_accepted == 1)
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        for s in held:
            s.close()
        e.shutdown()


def test_an_internal_error_closes_that_peer_only() -> None:
    import socket

    e, _, addr = hostile_engine()
    bad, good = socket.create_connection(addr), socket.create_connection(addr)
    try:
        good.sendall(hello())
        assert until(e, lambda: len(e.conns) == 2)
        add = e.router.add

        def boom(*_: object) -> None:
            raise RuntimeError("bug")

        e.router.add = boom  # type: ignore[method-assign]
        bad.sendall(hello() + channel.encode_client_add(CLIENT, 40000, TARGET, 80))
        assert until(e, lambda: e.c.internal_errors == 1 and len(e.conns) == 1)
        e.router.add = add  # type: ignore[method-assign]
        good.sendall(channel.encode_client_add(CLIENT, 40001, TARGET, 80))
        assert until(e, lambda: e.c.client_adds == 2 and e.c.routes == 1)
    finally:
        bad.close()
        good.close()
        e.shutdown()


def test_parked_replies_are_capped() -> None:
    from nfreplay.engine.assist import Limits

    e = AssistEngine(listener=None, limits=Limits(parked=2))  # type: ignore[arg-type]
    for port in (40000, 40001, 40002):
        e.on_packet(reply(SYN | ACK, port=port))
    assert e.c.records_parked == 2 and e.c.records_unrouted == 1


def test_a_connection_that_does_not_read_is_closed_past_its_backlog() -> None:
    import socket

    e, _, addr = hostile_engine(backlog=1 << 16)
    lazy = socket.socket()
    lazy.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    lazy.connect(addr)
    try:
        lazy.sendall(hello() + channel.encode_client_add(CLIENT, 40000, TARGET, 80))
        assert until(e, lambda: e.c.client_adds == 1)
        batches = 0
        while e.c.connections_backlog_full == 0 and batches < 500:
            for _ in range(500):
                e.on_packet(reply(ACK | PSH, plen=100))
            e.step(0)
            batches += 1
        assert e.c.connections_backlog_full == 1 and e.conns == []
        assert e.c.connections_closed == 1
    finally:
        lazy.close()
        e.shutdown()
