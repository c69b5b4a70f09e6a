"""Keep-alive HTTP connections that outlive a start of nfreplay-online (run in the client
namespace): phase 1 requests, then wait for a go-file, then phase 2 requests on the SAME
connections. Bounded in count and time; prints a JSON summary."""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import time

from load import request  # tests/lab/load.py, run from the same directory


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--server", required=True)
    p.add_argument("--sources", required=True)
    p.add_argument("--tag", required=True)
    p.add_argument("--connections", type=int, default=20)
    p.add_argument("--requests", type=int, default=3, help="per connection and phase")
    p.add_argument("--ready", required=True, help="file written when phase 1 is done")
    p.add_argument("--go", required=True, help="file whose appearance starts phase 2")
    p.add_argument("--deadline", type=float, default=60.0)
    a = p.parse_args()
    sources = a.sources.split(",")
    conns = [socket.create_connection((a.server, 80), timeout=10,
                                      source_address=(sources[i % len(sources)], 0))
             for i in range(a.connections)]
    ok = failed = 0

    def phase(n: int) -> None:
        nonlocal ok, failed
        for j in range(a.requests):
            for i, s in enumerate(conns):
                try:
                    good = request(s, f"/m/{a.tag}/p{n}/{i}/{j}", False)
                except OSError:
                    good = False
                ok, failed = ok + good, failed + (not good)

    phase(1)
    with open(a.ready, "w") as f:
        f.write("1")
    stop_at = time.monotonic() + a.deadline
    while not os.path.exists(a.go) and time.monotonic() < stop_at:
        time.sleep(0.05)
    phase(2)
    for s in conns:
        s.close()
    json.dump({"ok": ok, "failed": failed}, sys.stdout)
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
