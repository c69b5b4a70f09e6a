"""Bounded HTTP/1.1 load from the client namespace (run as a script there).

Short connections (one request each; half say `Connection: close` so the server closes first,
half are closed by the client after the answer) and keep-alive connections of several requests.
Every request path is distinct. Bounded in count and in time; prints a JSON summary.
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
import threading
import time


def request(sock: socket.socket, path: str, close: bool) -> bool:
    hdr = "Connection: close\r\n" if close else ""
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: lab\r\n{hdr}\r\n".encode())
    return response(sock)


def response(sock: socket.socket) -> bool:
    """Read one HTTP/1.1 response (Content-Length framed); True if it was a 200."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(4096)
        if not chunk:
            return False
        buf += chunk
    head, _, body = buf.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":")[1])
    while len(body) < length:
        chunk = sock.recv(4096)
        if not chunk:
            return False
        body += chunk
    return head.startswith(b"HTTP/1.1 200")


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--server", required=True)
    p.add_argument("--port", type=int, default=80)
    p.add_argument("--sources", required=True, help="comma list of local addresses to use")
    p.add_argument("--tag", required=True, help="distinguishes this run's paths")
    p.add_argument("--short", type=int, default=1000)
    p.add_argument("--keepalive", type=int, default=200)
    p.add_argument("--per-conn", type=int, default=5)
    p.add_argument("--threads", type=int, default=8)
    p.add_argument("--deadline", type=float, default=120.0, help="seconds before giving up")
    p.add_argument("--gap", type=float, default=0.0, help="pause between keep-alive requests")
    a = p.parse_args()
    sources = a.sources.split(",")
    jobs = [("s", i) for i in range(a.short)] + [("k", i) for i in range(a.keepalive)]
    lock = threading.Lock()
    ok: list[str] = []
    failed: list[str] = []
    stop_at = time.monotonic() + a.deadline

    def worker(n: int) -> None:
        while time.monotonic() < stop_at:
            with lock:
                if not jobs:
                    return
                kind, i = jobs.pop()
            src = sources[i % len(sources)]
            paths = ([f"/s/{a.tag}/{i}"] if kind == "s"
                     else [f"/k/{a.tag}/{i}/{j}" for j in range(a.per_conn)])
            try:
                with socket.create_connection((a.server, a.port), timeout=10,
                                              source_address=(src, 0)) as s:
                    for j, path in enumerate(paths):
                        close = kind == "s" and i % 2 == 0
                        good = request(s, path, close)
                        with lock:
                            (ok if good else failed).append(path)
                        if a.gap and j + 1 < len(paths):
                            time.sleep(a.gap)
            except OSError:
                with lock:
                    failed.extend(paths)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(a.threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    json.dump({"ok": len(ok), "failed": len(failed), "unsent": len(jobs),
               "failed_paths": failed[:20]}, sys.stdout)
    return 0 if not failed and not jobs else 1


if __name__ == "__main__":
    sys.exit(main())
