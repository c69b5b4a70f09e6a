"""Responses recorded on both sides during a live replay (`--record-responses`), then
`nfreplay compare`: the target serves other bytes on one path (HTTP) or for one key (Redis),
and the report flags exactly those exchanges, for short and keep-alive connections, with
copies and a client pool too."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path

import pytest

from tests.lab.helpers import paths, redis_cli, run_load, wait_for, wait_until
from tests.lab.servers import REDIS_PORT, Redis
from tests.lab.topology import ADDR, BIN, CLIENT_NET, Lab

pytestmark = [
    pytest.mark.lab,
    pytest.mark.skipif(os.geteuid() != 0, reason="the lab needs root (network namespaces)"),
]

POOL_NET = "198.18.4.0/24"
# The target answers like production ("same <uri>"), except under /s/diff/ and /k/diff/.
DIFF_LOCATION = '        location ~ ^/[sk]/diff/ { return 200 "changed $request_uri\\n"; }\n'


def start_recording(lab: Lab, port: int, clients: str, *online_extra: str,
                    assist_extra: tuple[str, ...] = ()
                    ) -> tuple[Path, Path, Callable[[], None]]:
    """The replay path for `port` with both daemons recording; returns (online dir, target
    dir, stop): stop ends both daemons (their files complete) and the target's route."""
    online_dir, target_dir = lab.dir / "rec-online", lab.dir / "rec-target"
    lab.nfreplay("target", "nfreplay", "target", "up", "--clients", clients,
                 "--via", ADDR["assist"])
    assist = lab.start_assist("--target", f"{ADDR['target']}:{port}", "--clients", clients,
                              "--record-responses", str(target_dir), *assist_extra)
    online = lab.start_online("--service", f"{ADDR['online']}:{port}",
                              "--target", f"{ADDR['target']}:{port}",
                              "--record-responses", str(online_dir), *online_extra)

    def stop() -> None:
        assert lab.stop_replay(assist, online) == (0, 0), lab.log("online") + lab.log("assist")
    return online_dir, target_dir, stop


def compare(online_dir: Path, target_dir: Path) -> tuple[int, dict]:
    done = subprocess.run([str(BIN / "nfreplay"), "compare", str(online_dir), str(target_dir),
                           "--json"], capture_output=True, text=True, timeout=120)
    assert done.returncode in (0, 1), done.stderr
    return done.returncode, json.loads(done.stdout)


def http_replay(lab: Lab, copies: int, *online_extra: str, clients: str = CLIENT_NET) -> dict:
    online_log = lab.start_nginx("online", name="same")
    target_log = lab.start_nginx("target", name="same", extra=DIFF_LOCATION)
    online_dir, target_dir, stop = start_recording(lab, 80, clients, *online_extra)
    for tag in ("same", "diff"):
        run_load(lab, tag, short=20, keepalive=5, per_conn=4)
        want = set(paths(online_log, tag))
        assert len(want) == 40 and wait_for(target_log, tag, want, 30) == want
    stop()
    code, report = compare(online_dir, target_dir)
    assert code == 1  # differences found
    endpoints = {e["endpoint"]: e for e in report["endpoints"]}
    want_all = {f"GET /s/{t}/{i}" for t in ("same", "diff") for i in range(20)} | {
        f"GET /k/{t}/{i}/{j}" for t in ("same", "diff") for i in range(5) for j in range(4)}
    assert set(endpoints) == want_all, (want_all - set(endpoints), report["sessions"],
                                        report["inputs"], report["totals"])
    for name, e in endpoints.items():
        assert e["exchanges"] == copies and e["unpaired"] == 0 and e["gaps"] == 0, e
        if "/diff/" in name:
            assert e["different"] == copies and e["identical"] == 0, e
            assert "status_changed" in e and e["status_changed"] == 0, e
        else:
            assert e["identical"] == copies and e["different"] == 0, e
    for side in ("production", "target"):
        assert all(e["latency_ms"][side]["p50"] is not None for e in endpoints.values())
    return report


def test_http_one_path_differs_short_and_keepalive(lab: Lab) -> None:
    report = http_replay(lab, 1)
    assert report["sessions"]["copies_paired"] == 50  # 20 + 5 connections per tag


def test_http_copies_and_a_client_pool_pair_with_the_same_production_response(
        lab: Lab) -> None:
    report = http_replay(lab, 2, "--copies", "2", "--client-pool", POOL_NET,
                         clients=f"{CLIENT_NET},{POOL_NET}")
    assert report["sessions"]["copies_paired"] == 100


def test_both_sides_record_the_same_share_of_sessions(lab: Lab) -> None:
    """--record-percent 50 on both daemons: about half the sessions recorded, and every one
    recorded whole on both sides (nothing unpaired)."""
    online_log = lab.start_nginx("online", name="same")
    target_log = lab.start_nginx("target", name="same", extra=DIFF_LOCATION)
    online_dir, target_dir, stop = start_recording(
        lab, 80, CLIENT_NET, "--record-percent", "50", assist_extra=("--record-percent", "50"))
    run_load(lab, "diff", short=60, keepalive=0)
    want = set(paths(online_log, "diff"))
    assert len(want) == 60 and wait_for(target_log, "diff", want, 30) == want
    stop()
    code, report = compare(online_dir, target_dir)
    assert code == 1
    endpoints = report["endpoints"]
    assert 15 <= len(endpoints) <= 45, len(endpoints)
    assert all((e["exchanges"], e["different"], e["unpaired"]) == (1, 1, 0) for e in endpoints)
    sessions = report["sessions"]
    assert sessions["copies_paired"] == len(endpoints), sessions
    assert not sessions.get("connections_without_replies"), sessions
    assert not sessions.get("reply_connections_unpaired"), sessions  # the assistant chose alike


def test_redis_one_key_differs(lab: Lab) -> None:
    with ExitStack() as stack:
        dbs = {}
        for role in ("online", "target"):
            db = dbs[role] = Redis(lab, role)
            stack.callback(db.stop)
            db.start()
        for role, color in (("online", "red"), ("target", "blue")):
            dbs[role].cli("MSET", "color", color, "shape", "round", "size", "9")
        online_dir, target_dir, stop = start_recording(lab, REDIS_PORT, CLIENT_NET)
        for _ in range(10):
            done = redis_cli(lab, "GET color\nGET shape\nGET size\n")
            assert done.returncode == 0 and done.stdout.split() == ["red", "round", "9"], done
        # Every session replayed to its end before the daemons stop.
        assert wait_until(lambda: lab.online_status().get("counters", {}).get(
            "sessions_completed") == 10, 30), lab.online_status()
        stop()
        code, report = compare(online_dir, target_dir)
    assert code == 1
    (get,) = [e for e in report["endpoints"] if e["endpoint"] == "GET"]
    assert (get["exchanges"], get["different"], get["identical"], get["unpaired"]) == \
        (30, 10, 20, 0), get
    assert all("color" in json.dumps(x) or "red" in json.dumps(x) for x in get["examples"]), get
