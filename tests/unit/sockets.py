"""Socket helpers the unit tests share (loopback sockets only)."""

from __future__ import annotations

import select
import socket

WAIT = 2.0  # seconds any read below may take before the test fails


def recv_exact(sock: socket.socket, n: int) -> bytes:
    sock.settimeout(WAIT)
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        assert chunk, f"peer closed after {len(data)} of {n} bytes"
        data += chunk
    return data


def nothing_pending(sock: socket.socket) -> bool:
    r, _, _ = select.select([sock], [], [], 0)
    return not r
