"""HTTP/1.1 sessions for the protocol lab (run as a script in the client namespace).

    --pipelined C --depth P --batches B   C connections; each writes P GETs in ONE send, then
                                          reads the P responses; B such batches per connection
    --download N                          N connections: GET /big/TAG/i (1 MiB), then a small
                                          GET /after-big/TAG/i on the same connection
    --upload N                            N connections: POST /up/TAG/i with a 1 MiB body, then
                                          a small GET /after-up/TAG/i on the same connection

Every path is distinct; the online server must answer 200 to each. Bounded in count and in
time (--deadline); prints a JSON summary {"ok": [...paths], "failed": [...], "unsent": n}.
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
import time

UPLOAD_SIZE = 1 << 20


class Conn:
    """A client connection with a read buffer that parses responses one after another."""

    def __init__(self, server: str, port: int, src: str) -> None:
        self.s = socket.create_connection((server, port), timeout=15, source_address=(src, 0))
        self.buf = b""

    def _fill(self) -> None:
        chunk = self.s.recv(262144)
        if not chunk:
            raise ConnectionError("server closed")
        self.buf += chunk

    def response(self) -> tuple[int, int]:
        """(status, body length) of the next response, body read entirely."""
        while b"\r\n\r\n" not in self.buf:
            self._fill()
        head, _, rest = self.buf.partition(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        self.buf = rest
        while len(self.buf) < length:
            self._fill()
        self.buf = self.buf[length:]
        return int(head.split(b" ", 2)[1]), length

    def close(self) -> None:
        self.s.close()


def get(path: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: lab\r\n\r\n".encode()


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--server", required=True)
    p.add_argument("--port", type=int, default=80)
    p.add_argument("--sources", required=True, help="comma list of local addresses to use")
    p.add_argument("--tag", required=True)
    p.add_argument("--pipelined", type=int, default=0)
    p.add_argument("--depth", type=int, default=5)
    p.add_argument("--batches", type=int, default=2)
    p.add_argument("--download", type=int, default=0)
    p.add_argument("--upload", type=int, default=0)
    p.add_argument("--big-size", type=int, default=1 << 20)
    p.add_argument("--deadline", type=float, default=60.0)
    a = p.parse_args()
    sources = a.sources.split(",")
    stop_at = time.monotonic() + a.deadline
    ok: list[str] = []
    failed: list[str] = []
    jobs: list[tuple[str, int]] = ([("pipe", i) for i in range(a.pipelined)]
                                   + [("down", i) for i in range(a.download)]
                                   + [("up", i) for i in range(a.upload)])
    body = bytes(range(256)) * (UPLOAD_SIZE // 256)
    while jobs and time.monotonic() < stop_at:
        kind, i = jobs.pop(0)
        src = sources[i % len(sources)]
        if kind == "pipe":
            plan = [[f"/p/{a.tag}/{i}/{b}/{j}" for j in range(a.depth)] for b in range(a.batches)]
        elif kind == "down":
            plan = [[f"/big/{a.tag}/{i}"], [f"/after-big/{a.tag}/{i}"]]
        else:
            plan = [[f"/up/{a.tag}/{i}"], [f"/after-up/{a.tag}/{i}"]]
        todo = [path for batch in plan for path in batch]
        try:
            c = Conn(a.server, a.port, src)
            try:
                for batch in plan:
                    if kind == "up" and batch[0].startswith("/up/"):
                        c.s.sendall(f"POST {batch[0]} HTTP/1.1\r\nHost: lab\r\nContent-Type: "
                                    f"application/octet-stream\r\nContent-Length: {len(body)}"
                                    "\r\n\r\n".encode() + body)
                    else:
                        c.s.sendall(b"".join(get(path) for path in batch))  # one send
                    for path in batch:
                        status, length = c.response()
                        good = status == 200 and (not path.startswith("/big/")
                                                  or length == a.big_size)
                        (ok if good else failed).append(path)
                        todo.remove(path)
            finally:
                c.close()
        except OSError:
            failed.extend(todo)
    json.dump({"ok": ok, "failed": failed, "unsent": len(jobs)}, sys.stdout)
    return 0 if not failed and not jobs else 1


if __name__ == "__main__":
    sys.exit(main())
