"""Interop with the C tools, when a build of them is at hand: tcpcopy 1.3 in front of
nfreplay-assist, nfreplay-online in front of intercept 1.0 (NFQUEUE build).

Their code is not part of this repository and Debian does not package them: build them from
their public source and point NFREPLAY_TCPCOPY / NFREPLAY_INTERCEPT at the binaries; without
those the tests are skipped (with the reason).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from tests.lab.helpers import paths, run_load, status_json, wait_counters, wait_for
from tests.lab.topology import ADDR, CLIENT_NET, Lab

TCPCOPY = os.environ.get("NFREPLAY_TCPCOPY", "")
INTERCEPT = os.environ.get("NFREPLAY_INTERCEPT", "")

pytestmark = [
    pytest.mark.lab,
    pytest.mark.skipif(os.geteuid() != 0, reason="the lab needs root (network namespaces)"),
]


def assist_counters(lab: Lab) -> dict:
    daemons = status_json(lab, "assist")["daemons"]
    return daemons[0]["counters"] if daemons and daemons[0]["running"] else {}


def wait_assist(lab: Lab, done, what: str, timeout: float) -> dict:  # type: ignore[no-untyped-def]
    return wait_counters(lambda: assist_counters(lab), done, f"nfreplay-assist: {what}",
                         timeout, lambda: lab.log("assist"))


def replayed(lab: Lab, online_log: Path, target_log: Path, tag: str, want: int) -> None:
    run_load(lab, tag, short=want // 2, keepalive=want // 10, per_conn=5)
    sent = set(paths(online_log, tag))
    assert len(sent) == want
    got = wait_for(target_log, tag, sent, timeout=30)
    assert got == sent, f"{len(sent - got)} of {want} requests never reached the target"


@pytest.mark.skipif(not os.access(TCPCOPY, os.X_OK), reason="NFREPLAY_TCPCOPY is not set to "
                    "a tcpcopy binary")
def test_tcpcopy_reconnects_to_a_restarted_nfreplay_assist(lab: Lab) -> None:
    """tcpcopy -L keeps running when its assistant goes away and reconnects every 12 s:
    the restarted nfreplay-assist serves its new connections, and the sessions announced on
    them replay in full."""
    online_log = lab.start_nginx("online")
    target_log = lab.start_nginx("target")
    lab.nfreplay("target", "nfreplay", "target", "up", "--clients", CLIENT_NET,
                 "--via", ADDR["assist"])
    assist = lab.start_assist()
    tcpcopy = lab.spawn("online", [TCPCOPY, "-x", f"{ADDR['online']}:80-{ADDR['target']}:80",
                                   "-s", ADDR["assist"], "-L", "-l",
                                   str(lab.dir / "tcpcopy.daemon.log")], "tcpcopy.log")
    # tcpcopy opens two connections per assistant (its -C default), then captures.
    wait_assist(lab, lambda c: c["connections_live"] == 2, "tcpcopy connected", 10)
    replayed(lab, online_log, target_log, "before", 200)

    assert lab.stop(assist) == 0, lab.log("assist")
    assist = lab.start_assist()
    wait_assist(lab, lambda c: c["connections_live"] == 2, "tcpcopy reconnected", 20)
    replayed(lab, online_log, target_log, "after", 200)
    # 120 sessions of the second load announced on the new connections (counters are
    # published once a second: wait for them).
    c = wait_assist(lab, lambda c: c["client_adds"] >= 120, "sessions announced", 5)
    assert c["records_sent"] > 0 and c["internal_errors"] == 0, c
    assert tcpcopy.poll() is None, lab.log("tcpcopy")
    lab.stop(tcpcopy)
    assert lab.stop(assist) == 0
    lab.nfreplay("target", "nfreplay", "target", "down")


@pytest.mark.skipif(not os.access(INTERCEPT, os.X_OK), reason="NFREPLAY_INTERCEPT is not set "
                    "to an intercept binary (NFQUEUE build)")
def test_nfreplay_online_replays_through_intercept(lab: Lab) -> None:
    """intercept in place of nfreplay-assist (its NFQUEUE rule set by hand, as its users do):
    nfreplay-online announces its sessions and paces them on intercept's response headers."""
    online_log = lab.start_nginx("online")
    target_log = lab.start_nginx("target")
    rule = ["PREROUTING", "-p", "tcp", "-s", ADDR["target"], "--sport", "80", "-d", CLIENT_NET,
            "-j", "NFQUEUE", "--queue-num", "0"]
    lab.nfreplay("target", "nfreplay", "target", "up", "--clients", CLIENT_NET,
                 "--via", ADDR["assist"])
    lab.sh("assist", "iptables", "-t", "raw", "-I", *rule)
    try:
        intercept = lab.spawn("assist", [INTERCEPT, "-l", str(lab.dir / "intercept.daemon.log")],
                              "intercept.log")
        deadline = time.monotonic() + 10
        while not lab.sh("assist", "ss", "-Hltn", "sport = :36524").stdout.strip():
            assert intercept.poll() is None and time.monotonic() < deadline, lab.log("intercept")
            time.sleep(0.05)
        online = lab.start_online()
        replayed(lab, online_log, target_log, "icpt", 200)
        counters = lab.online_status()["counters"]
        assert counters["internal_errors"] == 0, counters
        assert lab.stop(online) == 0, lab.log("online")
        lab.stop(intercept)
    finally:
        lab.sh("assist", "iptables", "-t", "raw", "-D", *rule, check=False)
    lab.nfreplay("target", "nfreplay", "target", "down")
