"""Fan-in: two or three online hosts replay into one target through one assistant, while one
client talks to all of them at once from the same source ports (each port bound towards every
online host), so that the hosts announce the same client address and port at the same time.

Asserts on the target's access log (every request the online nginx logged), on a capture in
the client namespace (no reply of the target), and that every session each nfreplay-online
opened is accounted for: established, or not established for a counted reason.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.lab.helpers import count_captured, paths, scrape, start_capture, wait_until
from tests.lab.topology import ADDR, CLIENT_NET, CLIENTS, Lab

pytestmark = [
    pytest.mark.lab,
    pytest.mark.skipif(os.geteuid() != 0, reason="the lab needs root (network namespaces)"),
]

FANIN_LOAD = Path(__file__).with_name("fanin_load.py")



def unaccounted(c: dict) -> int:
    """Sessions opened and neither established nor counted under a reason they did not
    establish (`unestablished_<reason>`); 0 once no session is live."""
    reasons = sum(v for k, v in c.items() if k.startswith("unestablished_"))
    return c["sessions_opened"] - c["sessions_established"] - reasons


def fanin_load(lab: Lab, tag: str, port_base: int, short: int, keepalive: int,
               per_conn: int) -> dict:
    servers = ",".join(ADDR[r] for r in lab.onlines)
    done = subprocess.run(
        ["ip", "netns", "exec", lab.ns["client"], sys.executable, str(FANIN_LOAD),
         "--servers", servers, "--sources", CLIENTS[0], "--port-base", str(port_base),
         "--tag", tag, "--short", str(short), "--keepalive", str(keepalive),
         "--per-conn", str(per_conn), "--rate", "50", "--threads", "6", "--deadline", "200"],
        capture_output=True, text=True, timeout=260)
    summary = json.loads(done.stdout)
    assert summary["failed"] == 0 and summary["unsent"] == 0, summary
    return summary


@pytest.mark.parametrize("onlines", [2, 3])
def test_fanin_one_client_same_ports_on_every_online_host(onlines: int) -> None:
    short, keepalive, per_conn = 400, 10, 40
    with Lab(onlines=onlines) as lab:
        logs = {r: lab.start_nginx(r, name="online") for r in lab.onlines}
        target_log = lab.start_nginx("target")
        lab.nfreplay("target", "nfreplay", "target", "up", "--clients", CLIENT_NET,
                     "--via", ADDR["assist"])
        assist = lab.start_assist()
        online = {r: lab.start_online(host=r) for r in lab.onlines}
        sniffer = start_capture(lab)

        # Ports in Linux's ephemeral range, where a client's own would be.
        summary = fanin_load(lab, "fi", 40000, short, keepalive, per_conn)
        requests = short + keepalive * per_conn
        assert summary["ok"] == onlines * requests

        want: set[str] = set()
        for r in lab.onlines:
            got = set(paths(logs[r], "fi"))
            assert len(got) == requests, (r, len(got))
            want |= got

        def settled() -> bool:
            return all(lab.online_status(r).get("counters", {}).get("sessions_live", 1) == 0
                       for r in lab.onlines)

        assert wait_until(settled, 60, 0.5), [lab.online_status(r) for r in lab.onlines]
        got = set(paths(target_log, "fi"))
        c = {r: lab.online_status(r).get("counters", {}) for r in lab.onlines}
        st = json.loads(lab.nfreplay("assist", "nfreplay", "status", "--json",
                                     check=False).stdout)
        ac = st["daemons"][0]["counters"] if st["daemons"] else {}
        report = {"replayed": len(got & want), "wanted": len(want),
                  "online": {r: {k: v for k, v in cs.items() if v} for r, cs in c.items()},
                  "assist": {k: v for k, v in ac.items() if v}}
        print(json.dumps(report, indent=1))
        seen = count_captured(lab, sniffer)
        for r in lab.onlines:
            assert lab.stop(online[r]) == 0, lab.log(r)
        assert lab.stop(assist) == 0, lab.log("assist")
        lab.nfreplay("target", "nfreplay", "target", "down", check=False)

        assert seen["target"] == 0 and seen["online"] > 0, seen
        assert len(got & want) >= 0.999 * len(want), report
        for r, cs in c.items():
            assert cs["sessions_live"] == 0 and unaccounted(cs) == 0, (r, report)
            assert cs["sessions_opened"] == short + keepalive and cs["internal_errors"] == 0, r
            assert cs["sessions_collided"] == 0, (r, report)
        # Every client port was announced by every online host: after the first, each either
        # took a route whose session was over or collided with a live one and was moved.
        jobs = short + keepalive
        assert ac["announces_collided"] + ac["routes_taken_over"] >= (onlines - 1) * jobs, report
        assert ac["announces_collided"] > jobs / 4, report  # at the same time, most often
        assert sum(cs["sessions_moved"] for cs in c.values()) > jobs / 4, report
        assert ac["sessions_collided"] == 0 and ac["internal_errors"] == 0, report
        # The same numbers in the stats line each daemon logged at stop.
        for r in lab.onlines:
            stop_line = [ln for ln in lab.log(r).splitlines() if "collided" in ln][-1]
            assert "collided 0" in stop_line, stop_line


def test_fanin_sessions_that_cannot_move_are_counted_never_lost_silently() -> None:
    """Both online hosts rewrite their clients to the same pool address (`--client-pool`, the
    same on both: a misconfiguration), so every session keeps its port there and the pairs
    of sessions collide; with a pool a session is not moved. The one not replayed is counted
    as sessions_collided, the same in `status`, the stats line and /metrics, said in one WARN
    line naming what to configure, and every request is replayed or its session counted."""

    short = 150
    pool = "198.18.1.200"
    with Lab(onlines=2) as lab:
        logs = {r: lab.start_nginx(r, name="online") for r in lab.onlines}
        target_log = lab.start_nginx("target")
        lab.nfreplay("target", "nfreplay", "target", "up", "--clients", CLIENT_NET,
                     "--via", ADDR["assist"])
        assist = lab.start_assist()
        metrics = {r: f"127.0.0.1:{9500 + i}" for i, r in enumerate(lab.onlines)}
        online = {r: lab.start_online("--client-pool", pool, "--metrics-listen", metrics[r],
                                      host=r) for r in lab.onlines}
        sniffer = start_capture(lab)
        fanin_load(lab, "co", 45000, short, 0, 1)
        want = set().union(*(set(paths(logs[r], "co")) for r in lab.onlines))
        assert len(want) == 2 * short

        def settled() -> bool:
            return all(lab.online_status(r).get("counters", {}).get("sessions_live", 1) == 0
                       for r in lab.onlines)

        assert wait_until(settled, 60, 0.5)
        c = {r: lab.online_status(r)["counters"] for r in lab.onlines}
        scraped = {r: scrape(lab, r, metrics[r]) for r in lab.onlines}
        got = set(paths(target_log, "co")) & want
        seen = count_captured(lab, sniffer)
        for r in lab.onlines:
            assert lab.stop(online[r]) == 0, lab.log(r)
        assert lab.stop(assist) == 0, lab.log("assist")
        lab.nfreplay("target", "nfreplay", "target", "down", check=False)

        collided = sum(cs["sessions_collided"] for cs in c.values())
        report = {"replayed": len(got), "wanted": len(want), "collided": collided,
                  "online": {r: {k: v for k, v in cs.items() if v} for r, cs in c.items()}}
        assert seen["target"] == 0 and seen["online"] > 0, seen
        assert collided > short / 4, report  # the pairs met on the target, most of them
        # Short connections: one request per session. None lost without a count.
        assert len(got) + collided >= len(want) - len(want) // 1000, report
        for r, cs in c.items():
            assert unaccounted(cs) == 0 and cs["sessions_moved"] == 0, (r, report)
            assert cs["unestablished_collided"] == cs["sessions_collided"], (r, report)
            assert scraped[r][("nfreplay_online_sessions_collided_total", ())] == \
                cs["sessions_collided"]
            log = lab.log(r)
            stop_line = [ln for ln in log.splitlines() if "stats at stop" in ln][-1]
            assert f"collided {cs['sessions_collided']}," in stop_line, stop_line
            warns = [ln for ln in log.splitlines() if "sessions_collided" in ln]
            if cs["sessions_collided"]:
                assert len(warns) == 1 and "WARNING" in warns[0], warns
                assert "online.client_pool" in warns[0], warns
