"""Control-channel sockets (TCP 36524): the online side's client, the assist side's server.

Only socket handling lives here; the byte formats are in `nfreplay.proto.channel`. All sockets
are non-blocking; outgoing bytes are buffered per connection and flushed by the engine once
per wake-up, so one slow peer never stalls the loop.
"""

from __future__ import annotations

import errno
import logging
import os
import socket
from typing import Any, Protocol

from nfreplay.errors import HostError
from nfreplay.proto import channel

log = logging.getLogger("nfreplay.channel")

# A peer that lets this much pile up is not reading: drop the connection, not the host.
MAX_BACKLOG = 8 << 20
_AGAIN = (errno.EAGAIN, errno.EWOULDBLOCK, errno.EINPROGRESS)

# One receive buffer for every connection of the process (one loop reads them in turn, and
# the decoders copy what they keep): `recv(256 KiB)` would allocate a fresh 256 KiB object per
# read, which glibc serves with mmap, mremap and munmap, three system calls and page faults
# per read.
_RECV = bytearray(1 << 18)
_RECV_VIEW = memoryview(_RECV)


class Decoder(Protocol):
    """channel.MessageDecoder (assist side) or channel.FrameDecoder (online side)."""

    def feed(self, data: bytes | memoryview) -> list[Any]: ...


class Conn:
    """One control connection: a socket, its decoder and its outgoing buffer."""

    def __init__(self, sock: socket.socket, peer: str, decoder: Decoder) -> None:
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock = sock
        self.peer = peer
        self.decoder = decoder
        self.out = bytearray()
        self.closed = False
        self.connecting = False  # a non-blocking connect() still in progress
        self.version_checked = False  # the peer's version message was looked at (assist side)
        self.writing = False  # the engine waits for the socket to take more (assist side)
        # Both ends speak the nfreplay extension on this connection (the online side: the
        # assist said hello; the assist side: the peer offered it and was answered).
        self.notices = False
        self.since = 0.0

    def fileno(self) -> int:
        return self.sock.fileno()

    def _read(self) -> int | None:
        """Bytes read into the shared buffer now (0: none); None when the peer closed or the
        socket failed."""
        try:
            n = self.sock.recv_into(_RECV)
        except BlockingIOError:
            return 0
        except OSError:
            return None
        return n if n else None

    def recv(self) -> bytes | None:
        """Bytes available now; b"" if none; None when the peer closed or the socket failed."""
        n = self._read()
        return None if n is None else bytes(_RECV_VIEW[:n])

    def receive(self) -> list | None:
        """Decode what arrived: messages or records; [] if nothing yet; None when the peer
        closed. A peer that sent bad bytes raises WireError (the caller drops it)."""
        n = self._read()
        if n is None:
            return None
        return self.decoder.feed(_RECV_VIEW[:n]) if n else []

    def queue(self, data: bytes) -> None:
        self.out += data

    def flush(self, limit: int = MAX_BACKLOG) -> bool:
        """Send what is buffered; False if the connection must be dropped (it failed, or
        more than `limit` bytes are still waiting: the peer is not reading)."""
        out = self.out
        while out:
            try:
                n = self.sock.send(out)
            except BlockingIOError:
                break
            except OSError:
                return False
            del out[:n]
        return len(out) <= limit

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            try:
                self.sock.close()
            except OSError:
                pass


class Assistant:
    """The online side's links to one assistant: `count` connections, announced round-robin."""

    def __init__(self, ip: str, port: int, count: int) -> None:
        self.ip = ip
        self.port = port
        self.conns: list[Conn | None] = [None] * count
        #: `live()` as of the last `refresh()`: the engine refreshes it whenever a
        #: connection's state changed, so announcing does not rebuild it every time.
        self.ready: list[Conn] = []

    @property
    def name(self) -> str:
        return f"{self.ip}:{self.port}"

    def refresh(self) -> None:
        self.ready = self.live()

    def live(self) -> list[Conn]:
        return [c for c in self.conns if c is not None and not c.closed and not c.connecting]

    def connecting(self) -> list[Conn]:
        return [c for c in self.conns if c is not None and not c.closed and c.connecting]

    def connect_missing(self, now: float) -> None:
        """Start a non-blocking connect for every missing connection: the loop never waits
        for an assistant that does not answer (select() reports the outcome as writable)."""
        for i, c in enumerate(self.conns):
            if c is not None and not c.closed:
                continue
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setblocking(False)
            err = sock.connect_ex((self.ip, self.port))
            if err not in (0, errno.EINPROGRESS):
                log.debug("connect %s: %s", self.name, os.strerror(err))
                sock.close()
                self.conns[i] = None
                continue
            conn = Conn(sock, self.name, channel.FrameDecoder())
            conn.connecting, conn.since = True, now
            self.conns[i] = conn

    def finish_connect(self, conn: Conn, now: float, timeout: float) -> bool | None:
        """After select() said writable (or to check a timeout): True once connected (the
        version message is queued first, as tcpcopy does), False if it failed, None while
        still in progress."""
        err = conn.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err == 0:
            try:
                conn.sock.getpeername()
            except OSError:
                if now - conn.since < timeout:
                    return None
                err = errno.ETIMEDOUT
        if err:
            log.debug("connect %s: %s", self.name, os.strerror(err))
            conn.close()
            return False
        conn.connecting = False
        conn.notices = False
        # The extension is offered in fields tcpcopy leaves zero and intercept ignores.
        conn.queue(channel.encode_version(channel.FEATURE_NOTICES))
        return True

    def announce(self, msg: bytes) -> bool:
        """Queue a CLIENT_ADD on a live connection, always the same one for a session while
        the connections stay up (the assistant keeps a route with the connection that
        announced it first, so a repeated announcement must go there too)."""
        live = self.ready
        if not live:
            return False
        live[int.from_bytes(msg[:6], "big") % len(live)].queue(msg)
        return True


    def withdraw(self, msg: bytes) -> None:
        """Queue a CLIENT_DEL where the session was announced (the same connection as
        `announce` picks), if that connection speaks the nfreplay extension: tcpcopy never
        sends one, so a compat assistant is never sent one either."""
        live = self.ready
        if live:
            conn = live[int.from_bytes(msg[:6], "big") % len(live)]
            if conn.notices:
                conn.queue(msg)


class Listener:
    """The assist side's listening socket."""

    def __init__(self, ip: str, port: int) -> None:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((ip, port))
        except OSError as exc:
            s.close()
            raise HostError(f"control channel: cannot listen on {ip}:{port} ({exc.strerror})") from None
        s.listen(64)
        s.setblocking(False)
        self.sock = s

    def fileno(self) -> int:
        return self.sock.fileno()

    def accept(self, limit: int = 64) -> tuple[list[tuple[socket.socket, str]], int]:
        """Up to `limit` new connections as (socket, peer ip), and the errno that stopped
        accepting early (EMFILE: out of descriptors; the caller backs off), 0 if none."""
        conns: list[tuple[socket.socket, str]] = []
        while len(conns) < limit:
            try:
                sock, addr = self.sock.accept()
            except BlockingIOError:
                break
            except OSError as exc:
                if exc.errno in _AGAIN:
                    break
                return conns, exc.errno or -1
            conns.append((sock, addr[0]))
        return conns, 0

    def close(self) -> None:
        self.sock.close()
