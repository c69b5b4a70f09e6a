"""Redis connections that outlive a start of nfreplay-online (run in the client namespace):
SET commands in phase 1, then wait for a go-file, then more SETs on the SAME connections.
Each command is answered before the next is sent. Bounded; prints a JSON summary."""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import time


def resp(*words: str) -> bytes:
    return (f"*{len(words)}\r\n" + "".join(f"${len(w)}\r\n{w}\r\n" for w in words)).encode()


def command(sock: socket.socket, *words: str) -> bytes:
    sock.sendall(resp(*words))
    reply = b""
    while not reply.endswith(b"\r\n"):
        chunk = sock.recv(4096)
        if not chunk:
            raise OSError("connection closed")
        reply += chunk
    return reply


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--server", required=True)
    p.add_argument("--port", type=int, default=6379)
    p.add_argument("--tag", required=True)
    p.add_argument("--connections", type=int, default=10)
    p.add_argument("--commands", type=int, default=5, help="per connection and phase")
    p.add_argument("--ready", required=True)
    p.add_argument("--go", required=True)
    p.add_argument("--deadline", type=float, default=60.0)
    a = p.parse_args()
    conns = [socket.create_connection((a.server, a.port), timeout=10)
             for _ in range(a.connections)]
    ok = 0

    def phase(n: int) -> None:
        nonlocal ok
        for j in range(a.commands):
            for i, s in enumerate(conns):
                key = f"{a.tag}:p{n}:{i}:{j}"
                ok += command(s, "SET", key, f"v-{key}") == b"+OK\r\n"

    phase(1)
    with open(a.ready, "w") as f:
        f.write("1")
    stop_at = time.monotonic() + a.deadline
    while not os.path.exists(a.go) and time.monotonic() < stop_at:
        time.sleep(0.05)
    phase(2)
    for s in conns:
        s.close()
    json.dump({"ok": ok, "sent": 2 * a.connections * a.commands}, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
