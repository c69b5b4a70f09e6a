"""Bounded HTTP/1.1 load from one client to several servers at once, on the same source ports
(run as a script in the client namespace): fan-in's worst case.

Each job binds one socket per server to the same local address and port (SO_REUSEADDR: the
four-tuples differ only in the server) and runs the same exchange on all of them side by side:
short (one request; half say `Connection: close`) or keep-alive (`--per-conn` requests, paced
at `--rate` per second). Job i uses port `--port-base` + i, so no two jobs of a run share a
port. Paths are `/s/<tag>/<server>/<i>` and `/k/<tag>/<server>/<i>/<j>`, server = its index.
Bounded in count and in time; prints a JSON summary.
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
import threading
import time

from load import response  # its neighbour (a script's own directory is on sys.path)


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--servers", required=True, help="comma list of server addresses")
    p.add_argument("--port", type=int, default=80)
    p.add_argument("--sources", required=True, help="comma list of local addresses to use")
    p.add_argument("--port-base", type=int, required=True, help="job i binds this + i")
    p.add_argument("--tag", required=True, help="distinguishes this run's paths")
    p.add_argument("--short", type=int, default=500)
    p.add_argument("--keepalive", type=int, default=10)
    p.add_argument("--per-conn", type=int, default=50)
    p.add_argument("--rate", type=float, default=50.0, help="keep-alive requests/s per conn")
    p.add_argument("--threads", type=int, default=8)
    p.add_argument("--deadline", type=float, default=120.0, help="seconds before giving up")
    a = p.parse_args()
    servers = a.servers.split(",")
    sources = a.sources.split(",")
    if a.port_base + a.short + a.keepalive > 65536 or a.port_base < 1024:
        p.error("--port-base: the jobs' ports must lie in 1024-65535")
    # Keep-alive jobs first: they last longest, and the short ones run beside them.
    jobs = [("s", i) for i in range(a.short)] + [("k", i) for i in range(a.keepalive)]
    lock = threading.Lock()
    ok: list[str] = []
    failed: list[str] = []
    stop_at = time.monotonic() + a.deadline

    def job(kind: str, i: int) -> None:
        n = i if kind == "s" else a.short + i
        src, port = sources[n % len(sources)], a.port_base + n
        count = 1 if kind == "s" else a.per_conn
        socks: list[socket.socket] = []
        try:
            for server in servers:
                s = socket.socket()
                socks.append(s)
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                s.settimeout(10)
                s.bind((src, port))
                s.connect((server, a.port))
            for j in range(count):
                started = time.monotonic()
                names = [f"/s/{a.tag}/{k}/{i}" if kind == "s" else f"/k/{a.tag}/{k}/{i}/{j}"
                         for k in range(len(servers))]
                close = kind == "s" and i % 2 == 0
                for s, path in zip(socks, names):  # both requests leave before any answer
                    hdr = "Connection: close\r\n" if close else ""
                    s.sendall(f"GET {path} HTTP/1.1\r\nHost: lab\r\n{hdr}\r\n".encode())
                for s, path in zip(socks, names):
                    good = response(s)
                    with lock:
                        (ok if good else failed).append(path)
                if kind == "k" and j + 1 < count:
                    time.sleep(max(0.0, 1.0 / a.rate - (time.monotonic() - started)))
        except OSError as exc:
            with lock:
                failed.append(f"{kind}{i}: {exc}")
        finally:
            for s in socks:
                s.close()

    def worker() -> None:
        while time.monotonic() < stop_at:
            with lock:
                if not jobs:
                    return
                kind, i = jobs.pop()
            job(kind, i)

    threads = [threading.Thread(target=worker) for _ in range(a.threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    json.dump({"ok": len(ok), "failed": len(failed), "unsent": len(jobs),
               "failed_paths": failed[:20]}, sys.stdout)
    return 0 if not failed and not jobs else 1


if __name__ == "__main__":
    sys.exit(main())
