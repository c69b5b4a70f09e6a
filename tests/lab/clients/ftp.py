"""FTP sessions for the protocol lab (run as a script in the client namespace).

Each session: read the server's "220" greeting (the server speaks first), then USER anonymous,
PASS lab-TAG-i@, PWD, CWD /TAG/i (a distinct path the server logs; it answers 550), NOOP, QUIT.
Bounded in count and time; prints a JSON summary {"ok": [cwd paths], "failed": [...]}.
"""

from __future__ import annotations

import argparse
import ftplib
import json
import sys
import time


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--server", required=True)
    p.add_argument("--port", type=int, default=21)
    p.add_argument("--sources", required=True)
    p.add_argument("--tag", required=True)
    p.add_argument("--sessions", type=int, default=10)
    p.add_argument("--gap", type=float, default=0.0, help="pause between sessions")
    p.add_argument("--deadline", type=float, default=60.0)
    a = p.parse_args()
    sources = a.sources.split(",")
    stop_at = time.monotonic() + a.deadline
    ok: list[str] = []
    failed: list[str] = []
    unsent = 0
    for i in range(a.sessions):
        if time.monotonic() > stop_at:
            unsent = a.sessions - i
            break
        path = f"/{a.tag}/{i}"
        try:
            f = ftplib.FTP(timeout=15, source_address=(sources[i % len(sources)], 0))
            greeting = f.connect(a.server, a.port)
            assert greeting.startswith("220"), greeting
            f.login("anonymous", f"lab-{a.tag}-{i}@")
            assert f.pwd() == "/"
            try:
                f.cwd(path)
            except ftplib.error_perm as e:
                assert str(e).startswith("550"), e
            f.voidcmd("NOOP")
            f.quit()
            ok.append(path)
        except (OSError, EOFError, ftplib.Error, AssertionError):
            failed.append(path)
        if a.gap:
            time.sleep(a.gap)
    json.dump({"ok": ok, "failed": failed, "unsent": unsent}, sys.stdout)
    return 0 if not failed and not unsent else 1


if __name__ == "__main__":
    sys.exit(main())
