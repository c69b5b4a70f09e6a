"""The whole product in the four-namespace lab: real nginx on online and target, real daemons.

Asserts on the target's own view (its access log), on what the client namespace saw, on
`nfreplay status --json` during the run, and that `down` (also after SIGKILL) restores every
namespace's iptables (nft and legacy) and routes exactly.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from nfreplay import __version__ as nfreplay_version
from nfreplay.cli.reporting import compiled
from nfreplay.stats import pid_alive
from tests.lab.helpers import (
    scrape,
    count_captured, fresh_status, paths, run_load, start_capture, status_json,
    wait_counters, wait_for, wait_until,
)  # fmt: skip
from tests.lab.topology import ADDR, BIN, CLIENT_NET, CLIENTS, Lab

pytestmark = [
    pytest.mark.lab,
    pytest.mark.skipif(os.geteuid() != 0, reason="the lab needs root (network namespaces)"),
]

LOAD = Path(__file__).with_name("load.py")


def test_live_replay_end_to_end(lab: Lab) -> None:
    online_log = lab.start_nginx("online")
    target_log = lab.start_nginx("target")
    before = lab.firewall_and_routes()

    lab.nfreplay("target", "nfreplay", "target", "up", "--clients", CLIENT_NET,
                 "--via", ADDR["assist"])
    assist = lab.start_assist()
    online = lab.start_online()
    sniffer = start_capture(lab)

    summary = run_load(lab, "e2e", short=1000, keepalive=200, per_conn=5)
    assert summary["ok"] == 2000

    # (d) status during the run: queue bound, counters moving.
    st = fresh_status(lab, "assist", "records_sent")
    queues = st["nfqueue"]["queues"]
    assert [q["queue_number"] for q in queues] == [0] and queues[0]["peer_portid"] > 0
    assist_counters = st["daemons"][0]["counters"]
    assert assist_counters["packets_queued"] > 0 and assist_counters["records_sent"] > 0
    st_online = fresh_status(lab, "online", "sessions_established")["daemons"][0]
    assert st_online["running"] and st_online["counters"]["sessions_established"] > 0
    for role in ("online", "assist", "target"):  # the verdict, last line, and the exit code
        done = lab.nfreplay(role, "nfreplay", "status", check=False)
        assert done.returncode == 0, done.stdout
        assert done.stdout.splitlines()[-1].startswith("HEALTHY: "), done.stdout

    # (a) every request the online nginx logged reached the target's nginx.
    online_paths = set(paths(online_log, "e2e"))
    assert len(online_paths) == 2000
    got = wait_for(target_log, "e2e", online_paths, timeout=60)
    missing = sorted(online_paths - got)
    if missing:
        counters = {k: v for k, v in status_json(lab, "online")["daemons"][0]["counters"].items()
                    if v}
        raise AssertionError(f"{len(missing)} requests never reached the target, e.g. "
                             f"{missing[:5]}; online counters: {counters}")

    # (b) no packet from the target ever reached the client namespace.
    seen = count_captured(lab, sniffer)
    assert seen["target"] == 0 and seen["online"] > 0, seen

    assert lab.stop(online) == 0, lab.log("online")
    assert lab.stop(assist) == 0, lab.log("assist")
    st = lab.nfreplay("online", "nfreplay", "status", "--json", check=False)
    assert json.loads(st.stdout)["daemons"] == [] and st.returncode == 3  # nothing running

    lab.nfreplay("target", "nfreplay", "target", "down")
    # (c) everything restored.
    assert lab.firewall_and_routes() == before


def conntrack_entries_to_target(lab: Lab) -> int:
    """Connections to the target's port 80 in the online namespace's conntrack table."""
    table = lab.sh("online", "cat", "/proc/net/nf_conntrack").stdout
    return sum(1 for line in table.splitlines()
               if f"dst={ADDR['target']} " in line and " dport=80 " in line)


@pytest.mark.parametrize("inject", ["link", "ip"])
def test_replayed_sessions_and_the_online_hosts_conntrack(lab: Lab, inject: str) -> None:
    """With connection tracking active on the online host (a stateful firewall rule, as on many
    production hosts), `--inject link` (the default) puts the replayed packets on the link once
    the target's neighbour is resolved: no replayed session holds a conntrack entry there.
    `--inject ip` (through the kernel, tcpcopy's way) leaves one per session, which a busy
    host's conntrack table would have to hold. Both replay every request."""
    online_log = lab.start_nginx("online")
    target_log = lab.start_nginx("target")
    before = lab.firewall_and_routes()
    rule = ["OUTPUT", "-m", "conntrack", "--ctstate", "INVALID", "-m", "comment", "--comment",
            f"nfreplay-test-ct-{lab.prefix}", "-j", "ACCEPT"]
    filter_existed = "*filter" in lab.sh("online", "iptables-nft-save", check=False).stdout
    lab.sh("online", "iptables-nft", "-I", *rule)
    try:
        assist, online = lab.start_replay(80, "--inject", inject)
        # The first packets go through the kernel, which resolves the target's address; the
        # next look-up (once a second) finds it.
        run_load(lab, "ctwarm", short=20, keepalive=0)

        def path() -> str:
            return str((lab.online_status().get("extra") or {}).get("inject", {}).get(
                "paths", {}).get(ADDR["target"], ""))

        if inject == "link":
            assert wait_until(lambda: path().startswith("link eth0 to "), 10, 0.1), path()
            # `doctor online` finds the same path.
            conf = lab.dir / "doctor.toml"
            conf.write_text(f'[online]\nservice = "80"\ntarget = "{ADDR["target"]}:80"\n'
                            f'assistants = ["{ADDR["assist"]}"]\n')
            doctor = lab.nfreplay("online", "nfreplay", "doctor", "online", "--config",
                                  str(conf), check=False).stdout
            assert f"ok   path of the replayed packets to {ADDR['target']}: {path()}" in doctor, \
                doctor
        before_entries = conntrack_entries_to_target(lab)
        via_kernel = lab.online_status()["extra"]["inject"].get("through_kernel", 0)
        run_load(lab, "ct", short=200, keepalive=0)
        want = set(paths(online_log, "ct"))
        assert len(want) == 200
        assert wait_for(target_log, "ct", want, timeout=30) == want
        entries = conntrack_entries_to_target(lab) - before_entries
        inject_stats = lab.online_status()["extra"]["inject"]
        assert lab.stop_replay(assist, online) == (0, 0), lab.log("online")
    finally:
        lab.sh("online", "iptables-nft", "-D", *rule, check=False)
        if not filter_existed:
            lab.sh("online", "nft", "delete", "table", "ip", "filter", check=False)
    print(f"inject {inject}: {entries} conntrack entries for 200 replayed sessions; {inject_stats}")
    if inject == "link":
        assert inject_stats["mode"] == "link"
        assert entries == 0
        assert inject_stats["through_kernel"] == via_kernel  # none of these 200 sessions
    else:
        assert inject_stats == {"mode": "ip"}
        assert entries >= 190  # one per session (a reused client port would share one)
    assert lab.firewall_and_routes() == before


def test_down_after_sigkill_restores_everything(lab: Lab) -> None:
    lab.start_nginx("target")
    before = lab.firewall_and_routes()
    lab.nfreplay("target", "nfreplay", "target", "up", "--clients", CLIENT_NET,
                 "--via", ADDR["assist"])
    assist = lab.start_assist()
    during = lab.firewall_and_routes()
    assert during["assist"] != before["assist"] and during["target"] != before["target"]
    assert "nfreplay:assist:" in during["assist"][0]  # the host's iptables (nft) shows it

    assert lab.stop(assist, signal.SIGKILL) == -signal.SIGKILL
    done = lab.nfreplay("assist", "nfreplay", "status", check=False)
    assert done.returncode == 2, done.stdout  # broken: a dead daemon, its rule left behind
    assert "assist " + lab.prefix + " is dead" in done.stdout.splitlines()[-1], done.stdout
    # The kill left the rule behind; `up` again must clean it first and not duplicate it.
    assert lab.firewall_and_routes()["assist"] == during["assist"]
    again = lab.start_assist()
    assert lab.firewall_and_routes()["assist"] == during["assist"]
    os.kill(again.pid, signal.SIGKILL)
    again.wait()

    # The configuration was broken while the daemon ran (the units' ExecStopPost meets
    # this): `down` still removes what the journal says, and warns.
    broken = lab.dir / "broken.toml"
    broken.write_text("[assist]\nbogus_key = 1\n")
    down = lab.nfreplay("assist", "nfreplay-assist", "down", "--config", str(broken))
    assert down.returncode == 0, down.stderr
    assert "nfreplay-assist down: removed [" in down.stdout, down.stdout  # it says what went
    assert "assist.bogus_key: unknown key" in down.stderr, down.stderr
    down = lab.nfreplay("target", "nfreplay", "target", "down", "--config", str(broken))
    removed = [ln for ln in down.stdout.splitlines() if ": removed ip " in ln]
    assert len(removed) == 4, down.stdout  # blackhole and via routes, lookup and blackhole rules
    down = lab.nfreplay("target", "nfreplay", "target", "down")
    assert down.stdout == "nfreplay target down: nothing to remove\n", down.stdout
    assert lab.firewall_and_routes() == before


def test_down_stops_a_running_daemon_and_cleans(lab: Lab) -> None:
    before = lab.firewall_and_routes()
    extra_pid = lab.dir / "tcpcopy-style.pid"
    assist = lab.start_assist("-d", "-P", str(extra_pid))  # tcpcopy's spellings
    assert assist.wait(10) == 0  # the parent returns once the daemon is detached
    lab.wait_stats("assist")
    st = status_json(lab, "assist")
    pid = st["daemons"][0]["pid"]
    assert st["daemons"][0]["running"] and pid
    assert extra_pid.read_text().strip() == str(pid)
    # A second instance is refused in one line, before it detaches.
    again = lab.nfreplay("assist", "nfreplay-assist", "up", "--daemon", "--target",
                         f"{ADDR['target']}:80", "--clients", CLIENT_NET, check=False)
    assert again.returncode == 1 and "already running" in again.stderr
    assert again.stderr.count("\n") == 1
    # logrotate: the file is moved away, SIGHUP makes the daemon open a new one and go on.
    log = Path(lab.state_dir("assist")) / f"assist-{lab.prefix}.log"
    log.rename(log.with_suffix(".log.1"))
    os.kill(pid, signal.SIGHUP)
    deadline = time.monotonic() + 10
    while "log file" not in (log.read_text() if log.exists() else ""):
        assert time.monotonic() < deadline, "no new log file after SIGHUP"
        time.sleep(0.05)
    assert "reopened" in log.read_text() and pid_alive(pid)
    down = lab.nfreplay("assist", "nfreplay-assist", "down")
    assert not extra_pid.exists()
    assert down.returncode == 0, down.stderr
    assert not pid_alive(pid)  # gone (or a zombie of whatever init adopted it)
    assert lab.firewall_and_routes() == before


def test_operator_errors_are_one_line(lab: Lab) -> None:
    # A separate assistant with ip_forward=1 is refused before anything is installed.
    before = lab.firewall_and_routes()
    lab.sh("assist", "sysctl", "-qw", "net.ipv4.ip_forward=1")
    done = lab.nfreplay("assist", "nfreplay-assist", "up", "--target", f"{ADDR['target']}:80",
                        "--clients", CLIENT_NET, check=False)
    assert done.returncode == 3  # a host refusal: restarting would not help
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "ip_forward" in done.stderr and "Traceback" not in done.stderr
    assert lab.firewall_and_routes() == before
    # Bad values name their key and exit 2.
    done = lab.nfreplay("assist", "nfreplay-assist", "up", "--target", "198.18.0.3:99999",
                        "--clients", CLIENT_NET, check=False)
    assert done.returncode == 2 and done.stderr.count("\n") == 1
    assert "assist.target" in done.stderr
    # A capture interface that is not there (or down) is one line too.
    for iface, why in (("nope0", "no interface"), ("lo", "down")):
        lab.sh("online", "ip", "link", "set", "lo", "down")
        done = lab.nfreplay("online", "nfreplay-online", "up", "--service", "80", "--target",
                            f"{ADDR['target']}:80", "--assistant", ADDR["assist"],
                            "--interface", iface, check=False)
        assert done.returncode == 3 and done.stderr.count("\n") == 1, done.stderr
        assert why in done.stderr


def online_channel_up(lab: Lab, want: int, timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        daemons = status_json(lab, "online")["daemons"]
        if daemons and daemons[0]["extra"]["channel"]["up"] == want:
            return True
        time.sleep(0.2)
    return False


def test_online_reconnects_when_the_assistant_restarts(lab: Lab) -> None:
    online_log = lab.start_nginx("online")
    target_log = lab.start_nginx("target")
    lab.nfreplay("target", "nfreplay", "target", "up", "--clients", CLIENT_NET,
                 "--via", ADDR["assist"])
    assist = lab.start_assist()
    online = lab.start_online()
    run_load(lab, "before", short=50, keepalive=10)
    want = set(paths(online_log, "before"))
    assert want <= wait_for(target_log, "before", want, timeout=30)

    assert lab.stop(assist) == 0
    assert online_channel_up(lab, 0), lab.log("online")
    assist = lab.start_assist()
    assert online_channel_up(lab, 2), lab.log("online")

    run_load(lab, "after", short=50, keepalive=10)
    want = set(paths(online_log, "after"))
    got = wait_for(target_log, "after", want, timeout=30)
    assert want and want <= got, f"{len(want - got)} requests lost after the reconnect"
    assert lab.stop(online) == 0 and lab.stop(assist) == 0
    lab.nfreplay("target", "nfreplay", "target", "down")


def test_colocated_assist_on_the_target(lab: Lab) -> None:
    """nfreplay-assist on the target itself: replies queued in raw OUTPUT, no route needed."""
    online_log = lab.start_nginx("online")
    target_log = lab.start_nginx("target")
    # The target knows its way to the clients (as a real one does), so only the queue stops
    # its replies from reaching them.
    lab.sh("target", "ip", "route", "add", CLIENT_NET, "dev", "eth0")
    before = lab.firewall_and_routes()
    argv = [str(BIN / "nfreplay-assist"), "up", "--mode", "colocated",
            "--target", f"{ADDR['target']}:80", "--clients", CLIENT_NET,
            "--online", ADDR["online"], "--instance", lab.prefix, "--state-dir", lab.state_dir("target")]
    assist = lab.spawn("target", argv, "assist.log")
    lab.wait_stats("target-assist", assist.pid)
    online = lab.start_online("--assistant", ADDR["target"])
    sniffer = start_capture(lab)
    run_load(lab, "colo", short=100, keepalive=20)
    want = set(paths(online_log, "colo"))
    got = wait_for(target_log, "colo", want, timeout=30)
    assert len(want) == 200 and want <= got
    seen = count_captured(lab, sniffer)
    assert seen["target"] == 0 and seen["online"] > 0, seen
    assert lab.stop(online) == 0 and lab.stop(assist) == 0, lab.log("assist")
    assert lab.firewall_and_routes() == before


def test_midstream_keepalive_sessions_replay_after_online_starts(lab: Lab) -> None:
    """Connections opened before nfreplay-online started are joined mid-stream (faked
    handshake); their later requests reach the target. With --syn-only they would not."""
    online_log = lab.start_nginx("online")
    target_log = lab.start_nginx("target")
    lab.nfreplay("target", "nfreplay", "target", "up", "--clients", CLIENT_NET,
                 "--via", ADDR["assist"])
    assist = lab.start_assist()
    ready, go = lab.dir / "ready", lab.dir / "go"
    client = subprocess.Popen(
        ["ip", "netns", "exec", lab.ns["client"], sys.executable,
         str(LOAD.with_name("midstream_client.py")), "--server", ADDR["online"],
         "--sources", ",".join(CLIENTS), "--tag", "mid", "--connections", "20",
         "--requests", "3", "--ready", str(ready), "--go", str(go)],
        stdout=subprocess.PIPE, text=True, cwd=LOAD.parent)
    try:
        deadline = time.monotonic() + 30
        while not ready.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert ready.exists(), "phase 1 of the client never finished"
        online = lab.start_online()
        go.write_text("1")
        out, _ = client.communicate(timeout=60)
    finally:
        if client.poll() is None:
            client.kill()
            client.wait()
    assert json.loads(out) == {"ok": 120, "failed": 0}
    phase2 = {p for p in paths(online_log, "mid") if "/p2/" in p}
    assert len(phase2) == 60
    got = wait_for(target_log, "mid", phase2, timeout=30)
    missing = phase2 - got
    counters = fresh_status(lab, "online", "sessions_midstream")["daemons"][0]["counters"]
    assert not missing, f"{len(missing)} mid-stream requests lost; {counters}"
    assert not {p for p in got if "/p1/" in p}  # before the start: nothing to replay
    assert counters["sessions_midstream"] == 20
    assert lab.stop(online) == 0 and lab.stop(assist) == 0
    lab.nfreplay("target", "nfreplay", "target", "down")


def test_overload_sheds_new_sessions_and_every_admitted_one_completes(lab: Lab) -> None:
    """Overload on purpose: nfreplay-online is stopped (SIGSTOP) while clients keep opening
    short connections, until 500 of them went by (and 1.5 s); on SIGCONT its capture runs far behind the
    wire, so it refuses new sessions (sessions_shed) until it caught up. Every session it
    admitted completes, and admitted + shed accounts for every request production served."""

    online_log = lab.start_nginx("online")
    target_log = lab.start_nginx("target")
    assist, online = lab.start_replay()
    load = subprocess.Popen(
        ["ip", "netns", "exec", lab.ns["client"], sys.executable, str(LOAD),
         "--server", ADDR["online"], "--sources", ",".join(CLIENTS), "--tag", "shed",
         "--short", "4000", "--keepalive", "0", "--threads", "8", "--deadline", "240"],
        stdout=subprocess.PIPE, text=True)
    try:
        assert wait_until(lambda: len(paths(online_log, "shed")) >= 200, 60), "no load"
        os.kill(online.pid, signal.SIGSTOP)
        stopped = time.monotonic()
        try:
            # The overload: 500 new sessions and at least 1.5 s (3 times the shed limit).
            base = len(paths(online_log, "shed"))
            assert wait_until(lambda: len(paths(online_log, "shed")) >= base + 500
                              and time.monotonic() - stopped >= 1.5, 60, 0.02)
        finally:
            os.kill(online.pid, signal.SIGCONT)
        out, _ = load.communicate(timeout=300)
    finally:
        if load.poll() is None:
            load.kill()
            load.wait()
    summary = json.loads(out)
    assert summary["failed"] == 0 and summary["unsent"] == 0, summary
    served = len(paths(online_log, "shed"))
    assert served == 4000

    def settled() -> bool:
        c = lab.online_status().get("counters", {})
        return bool(c) and c["sessions_live"] == 0 and (
            c["sessions_opened"] + c["sessions_shed"] == served)

    assert wait_until(settled, 60), lab.online_status().get("counters")
    c = lab.online_status()["counters"]
    assert c["sessions_shed"] > 0, (c, lab.log("online")[-2000:])  # 1.5 s >> 500 ms
    assert c["sessions_completed"] == c["sessions_opened"], c
    assert wait_until(lambda: len(paths(target_log, "shed")) == c["sessions_opened"], 30)
    assert "overloaded: the capture runs" in lab.log("online")
    assert lab.stop_replay(assist, online) == (0, 0)


def worker_pids(lab: Lab) -> list[int]:
    return [w["pid"] for w in lab.online_status().get("extra", {}).get("workers", [])]


def test_two_workers_replay_everything_as_one_instance(lab: Lab) -> None:
    """--workers 2: the kernel splits the client ports between two processes, every session
    is replayed whole by one of them (none joined mid-stream by the other), `status` shows
    one instance with both, and `down` stops both. A SIGKILLed supervisor takes its workers
    with it."""

    online_log = lab.start_nginx("online")
    target_log = lab.start_nginx("target")
    assist, online = lab.start_replay(80, "--workers", "2")
    assert wait_until(lambda: len(worker_pids(lab)) == 2, 10), lab.online_status()
    summary = run_load(lab, "wk", short=300, keepalive=40, per_conn=5)
    want = set(paths(online_log, "wk"))
    assert len(want) == summary["ok"] == 500
    assert wait_for(target_log, "wk", want, 30) == want

    def settled() -> bool:
        c = lab.online_status().get("counters", {})
        return c.get("sessions_completed", 0) == 340 and c.get("sessions_live") == 0

    assert wait_until(settled, 30), lab.online_status().get("counters")
    st = lab.online_status()
    c = st["counters"]
    assert c["sessions_opened"] == 340 and c["sessions_midstream"] == 0, c
    assert c["packets_no_session"] == 0, c
    workers = st["extra"]["workers"]
    assert sorted(w["sessions_opened"] for w in workers)[0] > 0, workers  # both did work
    assert sum(w["sessions_opened"] for w in workers) == 340
    pids = [w["pid"] for w in workers]
    assert lab.stop_replay(assist, online) == (0, 0), lab.log("online")
    assert not any(pid_alive(p) for p in pids)

    # kill -9 of the supervisor: the workers stop by themselves; `down` cleans its files.
    online = lab.start_online("--workers", "2")
    assert wait_until(lambda: len(worker_pids(lab)) == 2, 10), lab.online_status()
    pids = worker_pids(lab)
    os.kill(online.pid, signal.SIGKILL)  # the supervisor alone, not its process group
    assert online.wait(10) == -signal.SIGKILL
    assert wait_until(lambda: not any(pid_alive(p) for p in pids), 15), pids
    down = lab.nfreplay("online", "nfreplay-online", "down")
    assert down.returncode == 0, down.stderr


HOSTILE = r'''
import socket, sys, time
host, port, kind, n = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
socks = []
def conn():
    s = socket.socket(); s.settimeout(5); s.connect((host, port)); return s
if kind == "steal":  # announce the real clients' ports, as a rogue build on the target would
    s = conn(); socks.append(s)
    msgs = [bytes(6) + b"\x00\x06" + bytes(6)] + [
        bytes([198, 18, 1, c]) + p.to_bytes(2, "big") + b"\x00\x01" + bytes([198, 18, 0, 3])
        + (80).to_bytes(2, "big") for p in range(32768, 61000) for c in (10, 11, 12, 13)]
    try:
        s.sendall(b"".join(msgs))
    except OSError:
        pass  # refused: the assist closed it
elif kind == "idle":
    for _ in range(n):
        try:
            socks.append(conn())
        except OSError:
            pass
elif kind == "flood":
    s = conn(); socks.append(s)
    try:
        s.sendall(b"\xff" * (10 << 20))
    except OSError:
        pass
elif kind == "version7":
    s = conn(); socks.append(s)
    s.sendall(bytes(6) + b"\x00\x07" + bytes(6) + bytes([198, 18, 1, 99]) + b"\x10\x00\x00\x01" + bytes([198, 18, 0, 3]) + b"\x00\x50")
print("done", len(socks), flush=True)
sys.stdin.readline()
'''


def test_hostile_peers_get_nothing_and_the_replay_stays_whole(lab: Lab) -> None:
    """While clients are replayed: a process on the target (not in assist.online) announces
    every client port; from the online host's own address, 2 000 more connections (beyond
    assist.max_connections_per_peer), 10 MB of garbage and protocol version 7. The assist
    refuses or closes each, stays up, and every request reaches the target."""

    online_log = lab.start_nginx("online")
    target_log = lab.start_nginx("target")
    assist, online = lab.start_replay()
    attackers = []
    try:
        for role, kind, n in (("target", "steal", 1), ("online", "flood", 1),
                              ("online", "version7", 1), ("online", "idle", 2000)):
            p = subprocess.Popen(["ip", "netns", "exec", lab.ns[role], sys.executable, "-c",
                                  HOSTILE, ADDR["assist"], "36524", kind, str(n)],
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
            attackers.append(p)
            assert p.stdout is not None
            done, made = p.stdout.readline().split()
            assert done == "done"
        idle = int(made)  # connections the last one (idle) got through
        summary = run_load(lab, "hostile", short=200, keepalive=20, per_conn=5)
        want = set(paths(online_log, "hostile"))
        assert len(want) == summary["ok"] == 300
        assert wait_for(target_log, "hostile", want, 30) == want
        # Every connection made is accepted or refused, once the assist has seen them all
        # (counters are published once a second): the online daemon's 2, the flood, the
        # version-7 one, the rogue's and the idle ones. Refused: the rogue (not in
        # assist.online) and the idle ones beyond 16 at a time from the online host; each
        # stalled one is closed after 5 s, letting one more in, so how many idle ones get
        # in depends on how long this takes: not an exact count.
        def counters() -> dict:
            return status_json(lab, "assist")["daemons"][0]["counters"]

        def seen(c: dict) -> int:
            return c["connections_accepted"] + c["connections_refused"]

        assert wait_until(lambda: seen(counters()) == 2 + 3 + idle, 30), counters()
        assert idle > 1000 and counters()["connections_refused"] > 1000, counters()
        st = status_json(lab, "assist")["daemons"][0]
        c = st["counters"]
        assert st["running"], st
        assert c["connections_closed"] >= 1, c  # the flood: not a version message
        assert c["announces_refused"] == 0 and c["routes"] < 1000, c  # the rogue got no route
        log = lab.log("assist")
        assert "refused 198.18.0.3" in log and "assist.online" in log
        assert "version 7" in log and "Traceback" not in log
    finally:
        for p in attackers:
            p.kill()
            p.wait()
    assert wait_until(lambda: assist.poll() is None, 1)
    assert lab.stop_replay(assist, online) == (0, 0)


def test_daemons_replay_with_more_than_1024_descriptors_open(lab: Lab) -> None:
    """Every descriptor the daemons open is numbered above 1 100: their loops (epoll), the
    capture, the queue and the control channel work there as anywhere."""
    online_log = lab.start_nginx("online")
    target_log = lab.start_nginx("target")
    lab.pad_fds = 1100
    assist, online = lab.start_replay()
    for p in (assist, online):
        assert len(os.listdir(f"/proc/{p.pid}/fd")) > 1100
    run_load(lab, "fds", short=200, keepalive=20, per_conn=5)
    want = set(paths(online_log, "fds"))
    assert len(want) == 300 and wait_for(target_log, "fds", want, 30) == want
    assert lab.stop_replay(assist, online) == (0, 0), lab.log("online") + lab.log("assist")


STRAY = r'''
import random, socket, sys
sys.path.insert(0, sys.argv[3])
from nfreplay import __version__ as nfreplay_version
from nfreplay.cli.reporting import compiled
from nfreplay.proto import tcpip
rng = random.Random(7)
server, n = tcpip.ip2int(sys.argv[1]), int(sys.argv[2])
clients = [tcpip.ip2int(f"198.18.1.{c}") for c in (10, 11, 12, 13)]
sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
for i in range(n):
    flags = rng.choice([0x18, 0x10, 0x18, 0x11, 0x04, 0x19, 0x38, 0xFF & rng.getrandbits(8)])
    pkt = tcpip.build(rng.choice(clients), server, rng.randrange(1024, 65536), 80,
                      rng.getrandbits(32), rng.getrandbits(32), flags,
                      payload=f"GET /stray/{i} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    if i % 3 == 0:  # malformed: a byte of the TCP header or payload flipped
        pkt[rng.randrange(20, len(pkt))] ^= 1 << rng.randrange(8)
    try:
        sock.sendto(pkt, (sys.argv[1], 0))
    except OSError:
        pass
print("sent", n)
'''


def test_stray_and_malformed_packets_never_reach_the_target(lab: Lab) -> None:
    """10 000 packets to the online service that belong to no connection (random ports,
    numbers and flags, each carrying an HTTP request, a third with a bit flipped): none is
    replayed; a real client's requests around them are, all of them."""

    online_log = lab.start_nginx("online")
    target_log = lab.start_nginx("target")
    assist, online = lab.start_replay()
    done = subprocess.run(["ip", "netns", "exec", lab.ns["client"], sys.executable, "-c", STRAY,
                           ADDR["online"], "10000", str(Path(__file__).parents[2])],
                          capture_output=True, text=True, timeout=120)
    assert done.stdout.split() == ["sent", "10000"], done.stderr
    run_load(lab, "real", short=100, keepalive=10)
    want = set(paths(online_log, "real"))
    assert len(want) == 150 and wait_for(target_log, "real", want, 30) == want
    # Every stray packet with data was held as a candidate and dropped unconfirmed after
    # MIDSTREAM_WAIT (10 s); the counters show it, and the target's log never has one.
    assert wait_until(lambda: lab.online_status()["counters"]["midstream_unconfirmed"] > 0, 20)
    c = lab.online_status()["counters"]
    assert c["sessions_midstream"] == 0 and c["internal_errors"] == 0, c
    assert paths(target_log, "stray") == []
    assert "routed" not in lab.log("online")  # no misleading warning about the target's route
    assert lab.stop_replay(assist, online) == (0, 0)


def target_stats(lab: Lab) -> dict:
    return json.loads((Path(lab.state_dir("target")) / f"target-{lab.prefix}.stats.json")
                      .read_text())["counters"]


def wait_target(lab: Lab, done, what: str, timeout: float = 15.0) -> dict:  # type: ignore[no-untyped-def]
    """The resident target watcher's counters once `done(counters)` holds."""
    return wait_counters(lambda: target_stats(lab), done, f"target watcher: {what}", timeout,
                         lambda: lab.log("target"))


def test_target_link_flap_during_replay_leaks_nothing_and_replay_resumes(lab: Lab) -> None:
    """The target has a default route out of the same link that reaches the clients (as a
    real target's default route would). Its link goes down and up while keep-alive sessions
    are being replayed: the kernel drops the route via the assistant, the blackhole behind it
    drops the replies meanwhile, the resident watcher puts the route back once the link is
    up, and requests sent after that all reach the target. Not one packet from the target
    reaches the client network at any time."""
    online_log = lab.start_nginx("online")
    target_log = lab.start_nginx("target")
    before = lab.firewall_and_routes()
    lab.sh("target", "ip", "route", "add", "default", "dev", "eth0")
    resident = lab.spawn("target", [str(BIN / "nfreplay"), "target", "up", "--resident",
                                    "--clients", CLIENT_NET, "--via", ADDR["assist"],
                                    "--instance", lab.prefix,
                                    "--state-dir", lab.state_dir("target")], "target.log")
    wait_target(lab, lambda c: c["checks"] >= 1 and c["missing"] == 0, "first look")
    assist = lab.start_assist()
    online = lab.start_online()
    sniffer = start_capture(lab)

    run_load(lab, "pre", short=100, keepalive=0)
    want = set(paths(online_log, "pre"))
    assert len(want) == 100 and wait_for(target_log, "pre", want, timeout=30) == want

    # Keep-alive sessions in flight across the flap (their requests 0.2 s apart).
    during = subprocess.Popen(
        ["ip", "netns", "exec", lab.ns["client"], sys.executable, str(LOAD),
         "--server", ADDR["online"], "--sources", ",".join(CLIENTS), "--tag", "flap",
         "--short", "0", "--keepalive", "16", "--per-conn", "15", "--gap", "0.2",
         "--threads", "16", "--deadline", "60"],
        stdout=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 10
    while len(paths(online_log, "flap")) < 16:  # every keep-alive session has begun
        assert time.monotonic() < deadline, paths(online_log, "flap")
        time.sleep(0.05)
    lab.sh("target", "ip", "link", "set", "eth0", "down")
    lost = wait_target(lab, lambda c: c["missing"] >= 1, "route via the assistant missing")
    assert lost["routes_lost"] >= 1
    # The link comes back, and with it the default route (as DHCP or networkd would put it).
    lab.sh("target", "sh", "-c", "ip link set eth0 up && ip route replace default dev eth0")
    back = wait_target(lab, lambda c: c["missing"] == 0 and c["routes_restored"] >= 1,
                       "route restored")
    shown = lab.sh("target", "ip", "route", "show", "table", "156").stdout
    assert f"{CLIENT_NET} via {ADDR['assist']}" in shown, shown
    done = lab.nfreplay("target", "nfreplay", "status", check=False)
    assert done.returncode == 0 and "HEALTHY: target " in done.stdout, done.stdout
    assert "restored: ip route add" in lab.log("target")
    flap = json.loads(during.communicate(timeout=90)[0])
    assert flap["failed"] == 0, flap  # the clients talk to production, which never flapped

    # A killed watcher leaves the routes (still failing closed); its restart adopts them
    # instead of removing and reinstalling them.
    lab.stop(resident, signal.SIGKILL)
    assert "lookup 156" in lab.sh("target", "ip", "-4", "rule").stdout
    resident = lab.spawn("target", [str(BIN / "nfreplay"), "target", "up", "--resident",
                                    "--clients", CLIENT_NET, "--via", ADDR["assist"],
                                    "--instance", lab.prefix,
                                    "--state-dir", lab.state_dir("target")], "target.log")
    lab.wait_stats("target", resident.pid)
    assert "adopting the routes a previous run installed" in lab.log("target")

    run_load(lab, "post", short=100, keepalive=20)
    want = set(paths(online_log, "post"))
    assert len(want) == 200 and wait_for(target_log, "post", want, timeout=30) == want

    seen = count_captured(lab, sniffer)
    assert seen["target"] == 0 and seen["online"] > 0, seen
    # Requests of the sessions that spanned the flap: the ones sent while the target was
    # unreachable are retransmitted; how many arrive depends on timing, so only shown.
    print(f"flap: {len(paths(target_log, 'flap'))}/{len(paths(online_log, 'flap'))} "
          f"requests replayed; watcher counters {back}")

    assert lab.stop(online) == 0 and lab.stop(assist) == 0
    down = lab.nfreplay("target", "nfreplay", "target", "down")
    assert f"stopped pid {resident.pid}" in down.stdout
    assert resident.wait(10) == 0, lab.log("target")
    lab.sh("target", "ip", "route", "del", "default", "dev", "eth0")
    assert lab.firewall_and_routes() == before


def test_fifteen_percent_loss_both_ways_never_duplicates_and_accounts_for_losses(
        lab: Lab) -> None:
    """The target drops 15 % of what it receives and of what it sends (iptables statistic
    rules in its namespace). No request reaches its nginx twice, and each one missing there
    belongs to a session counted as ended by a failure, or to a resend withheld."""
    from collections import Counter


    online_log = lab.start_nginx("online")
    target_log = lab.start_nginx("target")
    for chain, port in (("INPUT", "--dport"), ("OUTPUT", "--sport")):
        lab.sh("target", "iptables", "-A", chain, "-p", "tcp", port, "80", "-m", "statistic",
               "--mode", "random", "--probability", "0.15", "-j", "DROP")
    assist, online = lab.start_replay()
    run_load(lab, "loss", short=500, keepalive=100, per_conn=5)
    sent = paths(online_log, "loss")
    assert len(sent) == 1000
    # Until every session has ended (retransmissions back off up to 3 s, a SYN is tried 4
    # times, a response waits 3 s at most).
    # (Counters are published once a second: first wait until they show the whole load.)
    def over() -> bool:
        c = lab.online_status()["counters"]
        return c["client_data_packets"] >= 1000 and c["sessions_live"] == 0

    assert wait_until(over, 120), lab.online_status()["counters"]
    got = Counter(paths(target_log, "loss"))
    twice = sorted(p for p, n in got.items() if n > 1)
    assert not twice, f"processed twice: {twice[:10]}"
    missing = set(sent) - set(got)
    c = lab.online_status()["counters"]
    failed = sum(c[f"sessions_{r}"] for r in ("target_reset", "handshake_failed", "timed_out",
                                              "superseded", "capture_gap", "overflow"))
    short = [p for p in missing if p.startswith("/s/")]
    keep = [p for p in missing if p.startswith("/k/")]
    # A short session carries one request, a keep-alive one five.
    assert len(short) + len(keep) <= failed * 5 + c["resends_withheld"], (sorted(missing), c)
    assert len({p.rsplit("/", 2)[0] for p in keep}) + len(short) <= (
        failed + c["resends_withheld"]), (sorted(missing), c)
    print(f"15% loss: {1000 - len(missing)}/1000 replayed; failed sessions {failed}, "
          f"resends withheld {c['resends_withheld']}, retransmits {c['retransmits']}")
    assert lab.stop_replay(assist, online) == (0, 0)


def test_clients_with_tx_checksum_offload_replay_in_full(lab: Lab) -> None:
    """The client's interface keeps TX checksum offload on (the lab turns it off elsewhere):
    the online host captures its packets with unfinished TCP checksums, as on any host where
    sender and capture share a kernel or hypervisor. nfreplay sends them with full ones,
    counts them and says why once; the target gets every request."""

    online_log = lab.start_nginx("online")
    target_log = lab.start_nginx("target")
    lab.sh("client", "ethtool", "-K", "eth0", "tx", "on")
    assist, online = lab.start_replay()
    run_load(lab, "csum", short=200, keepalive=20, per_conn=5)
    want = set(paths(online_log, "csum"))
    assert len(want) == 300 and wait_for(target_log, "csum", want, 30) == want
    assert wait_until(lambda: lab.online_status()["counters"]["checksums_fixed"] >= 300, 10)
    log = lab.log("online")
    assert log.count("unfinished TCP checksums") == 1, log
    assert lab.stop_replay(assist, online) == (0, 0)


def test_sighup_never_stops_the_daemons(lab: Lab) -> None:
    online_log = lab.start_nginx("online")
    target_log = lab.start_nginx("target")
    assist, online = lab.start_replay()
    for p in (assist, online):
        os.kill(p.pid, signal.SIGHUP)
    for name in ("assist", "online"):
        deadline = time.monotonic() + 10
        while "SIGHUP" not in lab.log(name):
            assert time.monotonic() < deadline, lab.log(name)
            time.sleep(0.05)
    run_load(lab, "hup", short=50, keepalive=5)
    want = set(paths(online_log, "hup"))
    assert len(want) == 75 and wait_for(target_log, "hup", want, 30) == want
    assert assist.poll() is None and online.poll() is None
    assert lab.stop_replay(assist, online) == (0, 0)


def test_stats_lines_in_the_logs_and_one_at_stop(lab: Lab) -> None:
    online_log = lab.start_nginx("online")
    target_log = lab.start_nginx("target")
    lab.nfreplay("target", "nfreplay", "target", "up", "--clients", CLIENT_NET,
                 "--via", ADDR["assist"])
    assist = lab.start_assist("--stats-interval", "1")
    online = lab.start_online("--stats-interval", "1")
    run_load(lab, "st", short=100, keepalive=0)
    want = set(paths(online_log, "st"))
    assert wait_for(target_log, "st", want, 30) == want
    for name in ("online", "assist"):
        deadline = time.monotonic() + 10
        while "stats (last " not in lab.log(name):
            assert time.monotonic() < deadline, lab.log(name)
            time.sleep(0.1)
    assert lab.stop_replay(assist, online) == (0, 0)
    final = [ln for ln in lab.log("online").splitlines() if "stats at stop" in ln]
    assert len(final) == 1 and "sessions 100 (" in final[0] and "completed 100" in final[0], final
    final = [ln for ln in lab.log("assist").splitlines() if "stats at stop" in ln]
    assert len(final) == 1 and "announced 100 (" in final[0], final


def test_doctor_target_fails_without_the_route_and_passes_with_it(lab: Lab) -> None:
    args = ("doctor", "target", "--clients", CLIENT_NET, "--via", ADDR["assist"])
    before = lab.nfreplay("target", "nfreplay", *args, check=False)
    assert before.returncode == 1, before.stdout + before.stderr
    assert f"FIX  replies to {CLIENT_NET} go via the assistant {ADDR['assist']}" in before.stdout
    assert before.stdout.splitlines()[-1] == "target: 1 to fix"
    lab.nfreplay("target", "nfreplay", "target", "up", "--clients", CLIENT_NET,
                 "--via", ADDR["assist"])
    after = lab.nfreplay("target", "nfreplay", *args, check=False)
    assert after.returncode == 0, after.stdout + after.stderr
    assert f"ok   replies to {CLIENT_NET} go via the assistant" in after.stdout
    assert after.stdout.splitlines()[-1] == "target: ready"
    lab.nfreplay("target", "nfreplay", "target", "down")


def test_a_missing_target_route_is_warned_with_a_hint(lab: Lab) -> None:
    """No `nfreplay target up`: the target's SYN-ACKs never reach the assistant, so no
    session gets past its handshake; nfreplay-online says so, and what to check."""
    lab.start_nginx("online")
    lab.start_nginx("target")
    assist = lab.start_assist()
    online = lab.start_online()
    run_load(lab, "noroute", short=5, keepalive=0)
    deadline = time.monotonic() + 40  # SYN retries (about 7 s), then a look every 10 s
    while "got no answer to their SYN" not in lab.log("online"):
        assert time.monotonic() < deadline, lab.log("online")
        time.sleep(0.2)
    line = next(ln for ln in lab.log("online").splitlines() if "got no answer" in ln)
    assert "nfreplay target up" in line and "nfreplay doctor target" in line
    assert lab.stop(online) == 0 and lab.stop(assist) == 0


def test_metrics_of_both_daemons_move_and_agree_with_status(lab: Lab) -> None:
    """--metrics-listen on both daemons (two online workers, summed): scraped during a replay
    and parsed with prometheus_client's parser, the counters move, and once the replay is
    over they equal `nfreplay status --json`'s."""

    online_log = lab.start_nginx("online")
    target_log = lab.start_nginx("target")
    lab.nfreplay("target", "nfreplay", "target", "up", "--clients", CLIENT_NET,
                 "--via", ADDR["assist"])
    assist_at, online_at = f"{ADDR['assist']}:9188", f"{ADDR['online']}:9187"
    assist = lab.start_assist("--metrics-listen", assist_at)
    online = lab.start_online("--metrics-listen", online_at, "--workers", "2")
    before = scrape(lab, "online", online_at)
    assert before[("nfreplay_online_workers", ())] == 2
    assert before[("nfreplay_online_info", (("compiled", "yes" if compiled() else "no"),
                                            ("nfreplay_instance", lab.prefix),
                                            ("version", nfreplay_version)))] == 1
    run_load(lab, "mx", short=150, keepalive=10, per_conn=5)
    want = set(paths(online_log, "mx"))
    assert len(want) == 200 and wait_for(target_log, "mx", want, 30) == want

    def agree(role: str, address: str, pairs: list[tuple[str, tuple, str]]) -> bool:
        got, st = scrape(lab, role, address), status_json(lab, role)
        counters = st["daemons"][0]["counters"]
        return all(got.get((metric, labels)) == counters[name] for metric, labels, name in pairs)

    online_pairs = [
        ("nfreplay_online_sessions_opened_total", (), "sessions_opened"),
        ("nfreplay_online_packets_sent_total", (), "packets_sent"),
        ("nfreplay_online_records_received_total", (), "records_received"),
        ("nfreplay_online_sessions_ended_total", (("reason", "completed"),), "sessions_completed"),
        ("nfreplay_online_sessions_live", (), "sessions_live")]
    assert wait_until(lambda: agree("online", online_at, online_pairs), 20), \
        (scrape(lab, "online", online_at), status_json(lab, "online"))
    assist_pairs = [("nfreplay_assist_packets_queued_total", (), "packets_queued"),
                    ("nfreplay_assist_records_sent_total", (), "records_sent"),
                    ("nfreplay_assist_client_adds_total", (), "client_adds")]
    assert wait_until(lambda: agree("assist", assist_at, assist_pairs), 20), \
        (scrape(lab, "assist", assist_at), status_json(lab, "assist"))

    online_m, assist_m = scrape(lab, "online", online_at), scrape(lab, "assist", assist_at)
    assert online_m[("nfreplay_online_sessions_opened_total", ())] == 160  # it moved: 0 before
    assert before.get(("nfreplay_online_sessions_opened_total", ()), 0) == 0
    assert online_m[("nfreplay_online_sessions_ended_total", (("reason", "completed"),))] == 160
    assert online_m[("nfreplay_online_capture_received_packets_total", ())] > 0
    assert online_m[("nfreplay_online_capture_dropped_packets_total", ())] == 0
    assert online_m[("nfreplay_online_channel_connections_up", ())] >= 1
    assert assist_m[("nfreplay_assist_client_adds_total", ())] == 160
    assert assist_m[("nfreplay_assist_nfqueue_bound", (("queue", "0"),))] == 1
    assert assist_m[("nfreplay_assist_nfqueue_dropped_packets_total",
                     (("queue", "0"), ("reason", "queue_full")))] == 0
    assert lab.stop_replay(assist, online) == (0, 0)
