"""The demo (run by tests/lab/demo.sh as root): a short live replay in the four-namespace lab.

Prints each step, the status of every host while traffic flows, what the target received, and
proves the teardown left nothing behind.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from tests.lab.topology import ADDR, CLIENT_NET, CLIENTS, Lab

LOAD = Path(__file__).with_name("load.py")


def step(text: str) -> None:
    print(f"\n=== {text}", flush=True)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--short", type=int, default=200, help="short connections (default 200)")
    p.add_argument("--keepalive", type=int, default=40,
                   help="keep-alive connections of 5 requests (default 40)")
    a = p.parse_args()
    if os.geteuid() != 0:
        print("demo: needs root (network namespaces)", file=sys.stderr)
        return 1
    with Lab() as lab:
        step(f"lab up: namespaces {', '.join(lab.ns.values())} on a bridge in {lab.switch}")
        for role, ip in {**ADDR, "client": ", ".join(CLIENTS)}.items():
            print(f"  {role:7} {ip}")
        online_log = lab.start_nginx("online")
        target_log = lab.start_nginx("target")
        before = lab.firewall_and_routes()
        print("  nginx serving on online and target")

        step(f"target: nfreplay target up --clients {CLIENT_NET} --via {ADDR['assist']}")
        print(lab.nfreplay("target", "nfreplay", "target", "up", "--clients", CLIENT_NET,
                           "--via", ADDR["assist"]).stdout.rstrip())
        step(f"assistant: nfreplay-assist up --target {ADDR['target']}:80 --clients {CLIENT_NET}")
        assist = lab.start_assist()
        step(f"online: nfreplay-online up --service {ADDR['online']}:80 "
             f"--target {ADDR['target']}:80 --assistant {ADDR['assist']}")
        online = lab.start_online()

        step(f"client: {a.short} short connections and {a.keepalive} keep-alive connections "
             f"of 5 requests to the online nginx")
        t0 = time.monotonic()
        done = subprocess.run(
            ["ip", "netns", "exec", lab.ns["client"], sys.executable, str(LOAD),
             "--server", ADDR["online"], "--sources", ",".join(CLIENTS), "--tag", "demo",
             "--short", str(a.short), "--keepalive", str(a.keepalive), "--deadline", "120"],
            capture_output=True, text=True, timeout=180)
        print(f"  {json.loads(done.stdout)['ok']} answered by the online nginx in "
              f"{time.monotonic() - t0:.1f} s")
        want = set(online_log.read_text().split())
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not want <= set(target_log.read_text().split()):
            time.sleep(0.25)
        time.sleep(1.2)  # one more stats snapshot

        step("nfreplay status on the assistant")
        print(lab.nfreplay("assist", "nfreplay", "status", check=False).stdout.rstrip())
        step("nfreplay status on the online host")
        print(lab.nfreplay("online", "nfreplay", "status", check=False).stdout.rstrip())

        got = set(target_log.read_text().split())
        step(f"the target's nginx logged {len(want & got)} of the {len(want)} requests the "
             f"online nginx logged")

        step("teardown: SIGTERM both daemons, nfreplay target down")
        rc_online, rc_assist = lab.stop(online), lab.stop(assist)
        lab.nfreplay("target", "nfreplay", "target", "down")
        clean = lab.firewall_and_routes() == before
        print(f"  exit codes: online {rc_online}, assist {rc_assist}; iptables (nft and legacy) "
              f"and routes in every namespace as before: {'yes' if clean else 'NO'}")
        ok = want <= got and clean and rc_online == 0 and rc_assist == 0
    step(f"lab removed. demo {'passed' if ok else 'FAILED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
