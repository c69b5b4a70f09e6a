"""The control-channel sockets on real loopback connections: `Conn` (receive, queue, flush and
its backlog limit, close), `Listener` (accept with a limit, errors) and `Assistant` (the online
side's connections to one assistant: non-blocking connects, the version message first, a
timeout, reconnecting only what is gone, and routing each announcement by client address).

Nothing sleeps for a fixed time: every wait is a bounded poll on the condition it needs."""

from __future__ import annotations

import errno
import os
import resource
import select
import socket
import struct
import time
from collections.abc import Callable, Iterator

import pytest

from nfreplay.adapters.channel import MAX_BACKLOG, Assistant, Conn, Listener
from nfreplay.errors import HostError, WireError
from nfreplay.proto import channel, tcpip
from nfreplay.proto.tcpip import ACK, PSH, SYN, ip2int

CLIENT, TARGET = ip2int("198.18.1.10"), ip2int("198.18.0.3")
from tests.unit.sockets import WAIT, nothing_pending, recv_exact


# ------------------------------------------------------------------ helpers


def wait_until(cond: Callable[[], object], what: str, timeout: float = WAIT) -> None:
    """Poll `cond` until it holds; fail loudly, naming `what`, if it never does."""
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        time.sleep(0.001)


def readable(sock: socket.socket | Conn, what: str) -> None:
    r, _, _ = select.select([sock], [], [], WAIT)
    assert r, f"not readable within {WAIT} s: {what}"


def writable(sock: socket.socket | Conn, what: str) -> None:
    _, w, _ = select.select([], [sock], [], WAIT)
    assert w, f"not writable within {WAIT} s: {what}"


def accept_queue_len(listener: socket.socket) -> int:
    """Connections waiting in a listening socket's accept queue: for a LISTEN socket Linux
    reports it as tcpi_unacked (struct tcp_info: 8 one-byte fields, then rto, ato, snd_mss,
    rcv_mss, unacked as u32)."""
    info = listener.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104)
    return struct.unpack_from("I", info, 24)[0]


def record(port: int = 40000, flags: int = ACK | PSH, plen: int = 0) -> bytes:
    return channel.make_record(tcpip.build(TARGET, CLIENT, 80, port, 5000, 101, flags,
                                           payload=b"r" * plen))


@pytest.fixture
def server() -> Iterator[socket.socket]:
    """A plain listening socket on loopback with a small receive buffer (inherited by the
    accepted sockets, so a peer that does not read fills up quickly)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.bind(("127.0.0.1", 0))
    s.listen(16)
    yield s
    s.close()


@pytest.fixture
def pair(server: socket.socket) -> Iterator[tuple[Conn, socket.socket]]:
    """A Conn (the online side: records in) connected to a plain peer socket."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    sock.connect(server.getsockname())
    server.settimeout(WAIT)
    peer, _ = server.accept()
    conn = Conn(sock, "127.0.0.1:test", channel.FrameDecoder())
    yield conn, peer
    conn.close()
    peer.close()


# ------------------------------------------------------------------ Conn


def test_a_conn_is_non_blocking_without_nagle_and_starts_empty(pair) -> None:  # type: ignore[no-untyped-def]
    conn, _ = pair
    assert conn.sock.getblocking() is False
    assert conn.sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
    assert conn.fileno() == conn.sock.fileno() > 0
    assert (conn.out, conn.closed, conn.connecting, conn.peer) == (bytearray(), False, False,
                                                                   "127.0.0.1:test")


def test_recv_is_empty_when_nothing_came_then_the_bytes_then_none_at_eof(pair) -> None:  # type: ignore[no-untyped-def]
    conn, peer = pair
    assert conn.recv() == b""
    peer.sendall(b"hello")
    readable(conn, "the peer's 5 bytes")
    assert conn.recv() == b"hello"
    assert conn.recv() == b""
    peer.shutdown(socket.SHUT_WR)
    readable(conn, "the peer's FIN")
    assert conn.recv() is None


def test_recv_is_none_and_flush_false_after_the_peer_reset(pair) -> None:  # type: ignore[no-untyped-def]
    conn, peer = pair
    peer.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    peer.close()  # linger 0: a RST, not a FIN
    readable(conn, "the peer's RST")
    assert conn.recv() is None  # ECONNRESET, not an exception
    conn.queue(b"x" * 10)
    assert conn.flush() is False  # EPIPE: the connection must be dropped
    assert conn.out == bytearray(b"x" * 10)


def test_receive_decodes_records_split_at_any_byte(pair) -> None:  # type: ignore[no-untyped-def]
    conn, peer = pair
    assert conn.receive() == []  # nothing yet
    recs = [record(40000, plen=7), record(40001, SYN | ACK)]
    frame = channel.encode_frame(recs)
    peer.sendall(frame[:67])  # the count, the first record and a byte of the second
    readable(conn, "the first part of a frame")
    assert conn.receive() == []  # a frame is delivered whole: nothing yet, nothing lost
    peer.sendall(frame[67:] + channel.encode_frame([record(40002)]))
    got: list[bytes] = []
    wait_until(lambda: got.extend(conn.receive() or []) or len(got) == 3, "three records")
    assert got == recs + [record(40002)]
    peer.close()
    readable(conn, "the peer's FIN")
    assert conn.receive() is None


def test_receive_raises_wire_error_on_a_bad_frame_count(pair) -> None:  # type: ignore[no-untyped-def]
    conn, peer = pair
    peer.sendall(b"\x00\x00" + bytes(64))  # count 0: another build profile
    readable(conn, "the bad frame")
    with pytest.raises(WireError, match="bad frame count 0"):
        conn.receive()


def test_queued_bytes_leave_in_order_on_flush(pair) -> None:  # type: ignore[no-untyped-def]
    conn, peer = pair
    conn.queue(b"one,")
    conn.queue(b"two,")
    assert conn.out == bytearray(b"one,two,")
    assert nothing_pending(peer)  # queue() alone sends nothing
    conn.queue(b"three")
    assert conn.flush() is True
    assert conn.out == bytearray()
    assert recv_exact(peer, 13) == b"one,two,three"
    assert conn.flush() is True  # nothing to send is fine


def fill_until_stuck(conn: Conn, chunk: int = 1 << 20) -> int:
    """Queue bytes for a peer that does not read and flush until the kernel takes no more
    (nothing taken, and the socket not writable for 50 ms); returns how many it took."""
    conn.queue(b"z" * chunk)
    for _ in range(1000):
        before = len(conn.out)
        assert conn.flush(limit=1 << 30) is True
        if len(conn.out) == before:
            _, w, _ = select.select([], [conn], [], 0.05)
            if not w:
                return chunk - len(conn.out)
    raise AssertionError("the kernel never stopped taking bytes from a peer that does not read")


def test_flush_says_drop_only_when_more_than_limit_bytes_stay_unsent(pair) -> None:  # type: ignore[no-untyped-def]
    """The verdict is about what stays unsent after this flush: `len(out) <= limit`. A peer
    that does not read still lets the kernel take a few bytes now and then (window probes),
    so each check compares the verdict with what is left after that same call."""
    conn, peer = pair
    taken = fill_until_stuck(conn)
    left = len(conn.out)
    assert taken > 0 and left > 0  # the rest waits for the peer to read
    assert conn.flush(limit=left) is True  # at most `limit` bytes left: keep the connection
    ok = conn.flush(limit=left - 1)
    assert ok is (len(conn.out) <= left - 1)  # the boundary: one byte more than the limit
    assert conn.flush(limit=0) is False and len(conn.out) > left - 4096  # nothing dropped
    # The default limit is MAX_BACKLOG bytes.
    queued = taken + left  # every byte queued so far
    more = MAX_BACKLOG - len(conn.out)
    conn.queue(b"z" * more)
    queued += more
    assert len(conn.out) == MAX_BACKLOG
    assert conn.flush() is True
    more = MAX_BACKLOG + (64 << 10) - len(conn.out)
    conn.queue(b"z" * more)
    queued += more
    ok = conn.flush()
    assert ok is (len(conn.out) <= MAX_BACKLOG) and ok is False
    # Once the peer reads, what the kernel took and then what was still queued arrive, in
    # order (the queue is swapped for a short tail to keep this quick).
    in_kernel = queued - len(conn.out)
    conn.out[:] = b"tail" * 250
    want = in_kernel + 1000
    data = bytearray()
    peer.setblocking(False)
    deadline = time.monotonic() + WAIT
    while len(data) < want:
        assert time.monotonic() < deadline, f"only {len(data)} of {want} bytes arrived"
        assert conn.flush() is True
        select.select([peer], [], [], 0.01)
        try:
            data += peer.recv(1 << 20)
        except BlockingIOError:
            pass
    assert len(data) == want and conn.out == bytearray()
    assert data[:in_kernel] == b"z" * in_kernel and data[in_kernel:] == b"tail" * 250


def test_close_is_idempotent(server: socket.socket) -> None:
    class CountingSocket(socket.socket):
        closes = 0

        def close(self) -> None:
            type(self).closes += 1
            super().close()

    sock = CountingSocket(socket.AF_INET, socket.SOCK_STREAM)
    sock.connect(server.getsockname())
    server.settimeout(WAIT)
    peer, _ = server.accept()
    try:
        conn = Conn(sock, "p", channel.FrameDecoder())
        conn.close()
        conn.close()
        assert conn.closed is True and CountingSocket.closes == 1
        assert sock.fileno() == -1
        assert recv_exact_eof(peer)
        assert conn.recv() is None  # a closed socket reads as "gone", never raises
        conn.queue(b"late")
        assert conn.flush() is False
    finally:
        peer.close()


def recv_exact_eof(peer: socket.socket) -> bool:
    peer.settimeout(WAIT)
    return peer.recv(10) == b""


# ------------------------------------------------------------------ Listener


def test_listener_accepts_up_to_its_limit_and_names_the_peer_ip() -> None:
    listener = Listener("127.0.0.1", 0)
    addr = listener.sock.getsockname()
    clients = []
    try:
        assert listener.sock.getblocking() is False
        assert listener.accept() == ([], 0)  # nothing pending: no wait, no error
        clients = [socket.create_connection(addr, timeout=WAIT) for _ in range(3)]
        wait_until(lambda: accept_queue_len(listener.sock) == 3, "3 connections queued")
        first, err = listener.accept(limit=2)
        assert err == 0 and [ip for _, ip in first] == ["127.0.0.1", "127.0.0.1"]
        rest, err = listener.accept(limit=2)
        assert err == 0 and [ip for _, ip in rest] == ["127.0.0.1"]
        assert listener.accept() == ([], 0)
        # Each accepted socket is one of the clients, each exactly once.
        ports = sorted(s.getpeername()[1] for s, _ in first + rest)
        assert ports == sorted(c.getsockname()[1] for c in clients)
        for s, _ in first + rest:
            s.close()
    finally:
        for c in clients:
            c.close()
        listener.close()


def test_listener_reports_the_errno_that_stopped_accepting() -> None:
    """Out of descriptors: the connections accepted so far and EMFILE (the caller backs off)."""
    listener = Listener("127.0.0.1", 0)
    addr = listener.sock.getsockname()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    clients = [socket.create_connection(addr, timeout=WAIT) for _ in range(3)]
    held: list[socket.socket] = []
    accepted: list[tuple[socket.socket, str]] = []
    try:
        wait_until(lambda: accept_queue_len(listener.sock) == 3, "3 connections queued")
        top = max(int(fd) for fd in os.listdir("/proc/self/fd"))
        resource.setrlimit(resource.RLIMIT_NOFILE, (top + 8, hard))
        try:
            while True:
                held.append(socket.socket())
        except OSError as exc:
            assert exc.errno == errno.EMFILE
        held.pop().close()  # exactly one descriptor free: one accept succeeds
        accepted, err = listener.accept()
        assert err == errno.EMFILE and len(accepted) == 1
    finally:
        for s in held:
            s.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        for s, _ in accepted:
            s.close()
        for c in clients:
            c.close()
        listener.close()
    assert listener.sock.fileno() == -1


def test_listener_on_a_busy_port_raises_one_host_error_naming_it() -> None:
    first = Listener("127.0.0.1", 0)
    port = first.sock.getsockname()[1]
    try:
        with pytest.raises(HostError) as info:
            Listener("127.0.0.1", port)
        assert str(info.value) == (f"control channel: cannot listen on 127.0.0.1:{port} "
                                   "(Address already in use)")
    finally:
        first.close()


def test_a_closed_listener_refuses_connections() -> None:
    listener = Listener("127.0.0.1", 0)
    addr = listener.sock.getsockname()
    listener.close()
    assert listener.sock.fileno() == -1
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(addr, timeout=WAIT).close()


# ------------------------------------------------------------------ Assistant


@pytest.fixture
def assistant(server: socket.socket) -> Iterator[Assistant]:
    a = Assistant("127.0.0.1", server.getsockname()[1], 3)
    yield a
    for c in a.conns:
        if c is not None:
            c.close()


def connect_all(a: Assistant, server: socket.socket, now: float = 0.0
                ) -> list[socket.socket]:
    """Bring every missing connection of `a` up; returns the accepted peers, in slot order."""
    a.connect_missing(now)
    peers = []
    server.settimeout(WAIT)
    for c in a.connecting():
        writable(c, "a loopback connect")
        assert a.finish_connect(c, now, 3.0) is True
        peer, addr = server.accept()
        assert addr == c.sock.getsockname()
        peers.append(peer)
    a.refresh()
    return peers


def test_connect_missing_starts_a_non_blocking_connect_per_slot(assistant: Assistant,
                                                                server: socket.socket) -> None:
    a = assistant
    assert a.name == f"127.0.0.1:{server.getsockname()[1]}"
    assert a.conns == [None, None, None] and a.live() == [] and a.ready == []
    a.connect_missing(5.0)
    conns = list(a.conns)
    assert all(isinstance(c, Conn) for c in conns) and len({id(c) for c in conns}) == 3
    assert [(c.connecting, c.since, c.peer, c.closed) for c in conns] == [  # type: ignore[union-attr]
        (True, 5.0, a.name, False)] * 3
    assert all(isinstance(c.decoder, channel.FrameDecoder) for c in conns)  # type: ignore[union-attr]
    assert a.live() == [] and a.connecting() == conns
    a.refresh()
    assert a.ready == []  # a connect in progress takes no announcement
    a.connect_missing(6.0)  # nothing missing: nothing replaced
    assert a.conns == conns and [c.since for c in conns] == [5.0] * 3  # type: ignore[union-attr]


def test_a_finished_connect_queues_the_version_message_before_anything(
        server: socket.socket) -> None:
    a = Assistant("127.0.0.1", server.getsockname()[1], 1)
    peer = None
    try:
        a.connect_missing(0.0)
        (conn,) = a.conns
        assert conn is not None and conn.out == bytearray()
        writable(conn, "a loopback connect")
        assert a.finish_connect(conn, 0.0, 3.0) is True
        assert conn.connecting is False and conn.out == bytearray(channel.encode_version(channel.FEATURE_NOTICES))
        assert a.live() == [conn]
        # `ready` is the cached live list: an announcement waits for the engine's refresh().
        add = channel.encode_client_add(CLIENT, 40000, TARGET, 80)
        assert a.announce(add) is False and conn.out == bytearray(channel.encode_version(channel.FEATURE_NOTICES))
        a.refresh()
        assert a.ready == [conn] and a.announce(add) is True
        assert conn.flush() is True
        server.settimeout(WAIT)
        peer, _ = server.accept()
        data = recv_exact(peer, 2 * channel.MSG_SIZE)
        dec = channel.MessageDecoder()
        assert dec.feed(data) == [channel.ClientMessage(CLIENT, 40000, channel.TYPE_CLIENT_ADD,
                                                        TARGET, 80)]
        assert dec.greeted and dec.version == channel.VERSION and not dec.version_mismatch
    finally:
        if peer is not None:
            peer.close()
        for c in a.conns:
            if c is not None:
                c.close()


def test_a_refused_connect_is_closed_and_the_slot_is_retried() -> None:
    blocker = socket.socket()  # bound, never listening: a connect to it is refused
    blocker.bind(("127.0.0.1", 0))
    a = Assistant("127.0.0.1", blocker.getsockname()[1], 1)
    try:
        a.connect_missing(0.0)
        (conn,) = a.conns
        assert conn is not None and conn.connecting
        writable(conn, "the refused connect's outcome")
        assert a.finish_connect(conn, 0.0, 3.0) is False
        assert conn.closed and conn.out == bytearray()  # no version for a dead socket
        assert a.live() == [] and a.connecting() == []
        a.connect_missing(2.0)  # the reconnect: a fresh connection in the same slot
        (again,) = a.conns
        assert again is not conn and again is not None
        assert again.connecting and again.since == 2.0 and not again.closed
    finally:
        for c in a.conns:
            if c is not None:
                c.close()
        blocker.close()


def test_a_connect_that_hangs_is_in_progress_until_the_timeout() -> None:
    """An assistant whose accept queue is full drops our SYN: the connect stays in progress
    (None) until `timeout` seconds after it started, then fails (False) and is closed."""
    full = socket.socket()
    full.bind(("127.0.0.1", 0))
    full.listen(0)  # room for one queued connection
    filler = socket.create_connection(full.getsockname(), timeout=WAIT)
    a = Assistant("127.0.0.1", full.getsockname()[1], 1)
    try:
        wait_until(lambda: accept_queue_len(full) == 1, "the accept queue full")
        a.connect_missing(10.0)
        (conn,) = a.conns
        assert conn is not None
        _, w, _ = select.select([], [conn], [], 0.05)
        assert w == [], "a connect to a full accept queue completed (kernel behaviour changed)"
        assert a.finish_connect(conn, 10.0, 3.0) is None
        assert a.finish_connect(conn, 12.999, 3.0) is None
        assert conn.connecting and not conn.closed and conn.out == bytearray()
        assert a.connecting() == [conn] and a.live() == []
        assert a.finish_connect(conn, 13.0, 3.0) is False
        assert conn.closed and a.connecting() == [] and a.live() == []
    finally:
        for c in a.conns:
            if c is not None:
                c.close()
        filler.close()
        full.close()


def test_reconnecting_replaces_only_the_connections_that_are_gone(
        assistant: Assistant, server: socket.socket) -> None:
    a = assistant
    peers = connect_all(a, server)
    try:
        first = list(a.conns)
        assert a.ready == first and len(a.ready) == 3
        # The assistant closes the middle connection: the Conn learns it on its next read,
        # the Assistant only once the engine closes it (it owns no reads).
        peers[1].close()
        c1 = first[1]
        assert c1 is not None
        readable(c1, "the assistant's FIN")
        assert c1.receive() is None
        assert a.live() == first
        c1.close()
        assert a.live() == [first[0], first[2]]
        assert a.ready == first  # cached until the engine refreshes it
        a.refresh()
        assert a.ready == [first[0], first[2]]
        a.connect_missing(7.0)
        assert a.conns[0] is first[0] and a.conns[2] is first[2]
        new = a.conns[1]
        assert new is not None and new is not c1 and new.connecting and new.since == 7.0
        peers += connect_all(a, server, 7.0)
        assert new.out == bytearray(channel.encode_version(channel.FEATURE_NOTICES))
        assert a.ready == [first[0], new, first[2]]
    finally:
        for p in peers:
            p.close()


def slot(ip: int, port: int, n: int) -> int:
    return ((ip << 16) | port) % n


def test_announce_routes_each_client_address_to_one_connection(
        assistant: Assistant, server: socket.socket) -> None:
    a = assistant
    peers = connect_all(a, server)
    try:
        conns = list(a.ready)
        for c in conns:
            c.out.clear()  # the version messages
        clients = [(CLIENT, 40000), (CLIENT, 40001), (CLIENT, 40002), (CLIENT + 1, 40000),
                   (ip2int("10.0.0.1"), 65535), (0, 1)]
        assert {slot(ip, port, 3) for ip, port in clients} == {0, 1, 2}  # all three used
        want: list[bytearray] = [bytearray(), bytearray(), bytearray()]
        for ip, port in clients:
            msg = channel.encode_client_add(ip, port, TARGET, 80)
            assert a.announce(msg) is True
            want[slot(ip, port, 3)] += msg
        assert [c.out for c in conns] == want
        # A repeated announcement, also to another target, goes where the first one went:
        # the route is keyed by the client's ip:port alone.
        for c in conns:
            c.out.clear()
        again = channel.encode_client_add(CLIENT, 40001, TARGET + 7, 8080)
        assert a.announce(again) is True
        assert [bytes(c.out) for c in conns] == [again if i == slot(CLIENT, 40001, 3) else b""
                                                for i in range(3)]
        # With one connection gone (and refreshed), the address is hashed over the two left.
        for c in conns:
            c.out.clear()
        conns[0].close()
        a.refresh()
        assert a.announce(again) is True
        left = [conns[1], conns[2]]
        assert [bytes(c.out) for c in left] == [again if i == slot(CLIENT, 40001, 2) else b""
                                               for i in range(2)]
        # None left: the announcement is refused (the engine holds the SYN).
        for c in left:
            c.close()
        a.refresh()
        assert a.ready == [] and a.announce(again) is False
    finally:
        for p in peers:
            p.close()
