"""nfreplay.status: nfnetlink_queue parsing, collecting state files, table and JSON output."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from nfreplay import stats, status
from nfreplay.counters import counters_type
from nfreplay.errors import HostError
from nfreplay.status import QueueInfo

# The kernel's format (net/netfilter/nfnetlink_queue.c, seq_show: "%5u %6u %5u %1u %5u %5u %5u
# %8u %2d\n"), with Python's %d for the kernel's %u.
KFMT = "%5d %6d %5d %1d %5d %5d %5d %8d %2d\n"


def kline(*fields: int) -> str:
    return KFMT % (*fields, 1)


SAMPLE = (
    kline(0, 12345, 0, 2, 128, 0, 0, 42)
    + kline(1, 4026531, 17, 2, 64, 3000001, 12, 987654321)
    + kline(65535, 0, 0, 1, 0, 0, 0, 0)
)


def test_kernel_format_looks_like_the_real_thing() -> None:
    assert kline(0, 12345, 0, 2, 128, 0, 0, 42) == "    0  12345     0 2   128     0     0       42  1\n"


# ------------------------------------------------------------------------------ nfnetlink_queue


def test_parse_nfqueue_sample() -> None:
    queues = status.parse_nfqueue(SAMPLE)
    assert queues == [
        QueueInfo(0, 12345, 0, 2, 128, 0, 0, 42),
        QueueInfo(1, 4026531, 17, 2, 64, 3000001, 12, 987654321),
        QueueInfo(65535, 0, 0, 1, 0, 0, 0, 0),
    ]
    q = queues[1]
    assert (q.queue_number, q.peer_portid, q.queue_total) == (1, 4026531, 17)
    assert (q.copy_mode, q.copy_range) == (2, 64)
    assert (q.queue_dropped, q.user_dropped, q.id_sequence) == (3000001, 12, 987654321)


def test_parse_nfqueue_skips_garbage() -> None:
    text = "\n   \nqueue portid\n    0  1 2\n" + kline(3, 1, 2, 2, 64, 0, 0, 9) + "x y z a b c d e 1\n"
    assert status.parse_nfqueue(text) == [QueueInfo(3, 1, 2, 2, 64, 0, 0, 9)]


def test_read_nfqueue_file(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "nfnetlink_queue"
    path.write_text(SAMPLE)
    queues = status.read_nfqueue(str(path))
    assert queues.present and queues.error is None
    assert [q.queue_number for q in queues] == [0, 1, 65535]


def test_read_nfqueue_empty_file_means_loaded_but_unused(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "nfnetlink_queue"
    path.write_text("")
    queues = status.read_nfqueue(str(path))
    assert queues == [] and queues.present and queues.error is None


def test_read_nfqueue_missing_file(tmp_path: pathlib.Path) -> None:
    queues = status.read_nfqueue(str(tmp_path / "nope"))
    assert queues == []
    assert queues.present is False
    assert queues.error is None


def test_read_nfqueue_unreadable(tmp_path: pathlib.Path) -> None:
    queues = status.read_nfqueue(str(tmp_path))  # a directory: open() fails with EISDIR
    assert queues == [] and queues.present
    assert queues.error is not None and queues.error.startswith(str(tmp_path))


# ------------------------------------------------------------------------------ collect


@pytest.fixture
def nfreplay_proc() -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)", "nfreplay-assist"])
    try:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            if b"time.sleep(30)" in pathlib.Path(f"/proc/{proc.pid}/cmdline").read_bytes():
                break
            time.sleep(0.01)
        yield proc
    finally:
        proc.kill()
        proc.wait()


NOW = 1_700_000_100.0


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass", "nfreplay"])
    proc.wait()
    return proc.pid


@pytest.fixture
def state(tmp_path: pathlib.Path, nfreplay_proc: subprocess.Popen[bytes]) -> dict[str, object]:
    """A state dir with: a running assist, a crashed online (stale pid + journal), a stopped
    online of another instance (stats only), a target journal, and files to ignore."""
    d = tmp_path / "run"
    d.mkdir()
    sd = str(d)

    a = stats.state_paths(sd, "assist", "default")
    stats.write_pid(a.pid, nfreplay_proc.pid)
    pathlib.Path(a.stats).write_text(
        json.dumps(
            {
                "role": "assist",
                "instance": "default",
                "pid": nfreplay_proc.pid,
                "time": NOW - 0.5,
                "started": NOW - 3725,
                "counters": {"queued": 123456, "dropped": 123400, "accepted": 56, "records_sent": 98765},
                "extra": {"connections": 2},
            }
        )
    )
    pathlib.Path(a.journal).write_text("{}")

    o = stats.state_paths(sd, "online", "default")
    pathlib.Path(o.pid).write_text(str(dead_pid()))
    pathlib.Path(o.journal).write_text("{}")
    pathlib.Path(o.stats).write_text(
        json.dumps({"role": "online", "instance": "default", "pid": 1, "time": NOW - 60, "counters": {"captured": 777}})
    )

    o2 = stats.state_paths(sd, "online", "lab2")
    pathlib.Path(o2.stats).write_text(
        json.dumps({"role": "online", "instance": "lab2", "pid": dead_pid(), "time": NOW - 7200, "counters": {"captured": 5}})
    )

    t = stats.state_paths(sd, "target", "default")
    pathlib.Path(t.journal).write_text("{}")

    (d / "README").write_text("not a state file")
    (d / ".assist-default.stats.json.x1.tmp").write_text("{")
    (d / "intercept-default.pid").write_text("1")

    nfq = tmp_path / "nfnetlink_queue"
    nfq.write_text(SAMPLE)
    return {"dir": sd, "nfq": str(nfq), "pid": nfreplay_proc.pid}


def test_collect_daemons(state: dict[str, object]) -> None:
    data = status.collect(str(state["dir"]), nfqueue_path=str(state["nfq"]), now=NOW)
    by = {(d["role"], d["instance"]): d for d in data["daemons"]}
    assert [(d["role"], d["instance"]) for d in data["daemons"]] == [
        ("online", "default"),
        ("online", "lab2"),
        ("assist", "default"),
        ("target", "default"),
    ]

    assist = by[("assist", "default")]
    assert assist["state"] == "running" and assist["running"] is True
    assert assist["pid"] == state["pid"]
    assert assist["owner"] == "nfreplay:assist:default"
    assert assist["stats_age"] == pytest.approx(0.5)
    assert assist["started"] == NOW - 3725
    assert assist["counters"] == {"queued": 123456, "dropped": 123400, "accepted": 56, "records_sent": 98765}
    assert assist["extra"] == {"connections": 2}
    assert assist["files"]["journal"].endswith("assist-default.journal.json")

    crashed = by[("online", "default")]
    assert crashed["state"] == "dead" and crashed["running"] is False and crashed["pid"] is None
    assert crashed["stats_age"] == pytest.approx(60)
    assert crashed["counters"] == {"captured": 777}

    stopped = by[("online", "lab2")]
    assert stopped["state"] == "stopped" and stopped["running"] is False
    assert stopped["files"]["pid"] is None

    target = by[("target", "default")]
    assert target["state"] == "installed"
    assert target["counters"] == {} and target["stats_age"] is None

    assert data["nfqueue"]["present"] is True
    assert [q["queue_number"] for q in data["nfqueue"]["queues"]] == [0, 1, 65535]
    assert data["nfqueue"]["queues"][1]["queue_dropped"] == 3000001
    assert "installed" not in data


def test_collect_one_instance(state: dict[str, object]) -> None:
    data = status.collect(str(state["dir"]), "lab2", nfqueue_path=str(state["nfq"]), now=NOW)
    assert [(d["role"], d["instance"]) for d in data["daemons"]] == [("online", "lab2")]
    assert data["instance"] == "lab2"


def test_collect_without_pid_file_uses_the_stats_pid(tmp_path: pathlib.Path, nfreplay_proc: subprocess.Popen[bytes]) -> None:
    p = stats.state_paths(str(tmp_path), "online", "fg")
    stats.StatsFile(p.stats).write({"captured": 1})
    # This test process is the writer, and pytest's command line does not say nfreplay; a
    # stats file written by the real daemon names the daemon:
    doc = json.loads(pathlib.Path(p.stats).read_text())
    doc["pid"] = nfreplay_proc.pid
    pathlib.Path(p.stats).write_text(json.dumps(doc))
    data = status.collect(str(tmp_path), nfqueue_path=str(tmp_path / "none"))
    (d,) = data["daemons"]
    assert d["state"] == "running" and d["pid"] == nfreplay_proc.pid


def test_collect_installed(state: dict[str, object]) -> None:
    asked: list[str] = []

    def installed(tag: str) -> list[str]:
        asked.append(tag)
        if tag == "nfreplay:assist:default":
            return ["-t raw -A PREROUTING -p tcp -s 198.18.0.3 --sport 80 -j NFQUEUE --queue-num 0"]
        if tag == "nfreplay:target:default":
            raise HostError("ip: permission denied")
        return []

    data = status.collect(str(state["dir"]), installed=installed, nfqueue_path=str(state["nfq"]), now=NOW)
    assert sorted(asked) == sorted(
        ["nfreplay:online:default", "nfreplay:online:lab2", "nfreplay:assist:default", "nfreplay:target:default"]
    )
    by = {o["owner"]: o for o in data["installed"]}
    assert by["nfreplay:assist:default"]["items"][0].endswith("--queue-num 0")
    assert by["nfreplay:target:default"] == {"owner": "nfreplay:target:default", "items": [], "error": "ip: permission denied"}
    assert by["nfreplay:online:lab2"] == {"owner": "nfreplay:online:lab2", "items": [], "error": None}


def test_collect_installed_asks_for_the_instance_even_without_files(tmp_path: pathlib.Path) -> None:
    asked: list[str] = []
    data = status.collect(
        str(tmp_path / "gone"), "lab9", installed=lambda t: asked.append(t) or [], nfqueue_path=str(tmp_path / "x")
    )
    assert sorted(asked) == ["nfreplay:assist:lab9", "nfreplay:online:lab9", "nfreplay:target:lab9"]
    assert data["daemons"] == []
    assert data["state_dir_error"] == "no such directory"
    assert data["nfqueue"]["present"] is False


# ------------------------------------------------------------------------------ rendering


def test_render_table(state: dict[str, object]) -> None:
    data = status.collect(
        str(state["dir"]),
        installed=lambda tag: ["route 198.18.1.0/24 via 198.18.0.4 proto 250"] if "target" in tag else [],
        nfqueue_path=str(state["nfq"]),
        now=NOW,
    )
    text = status.render_table(data)
    lines = text.splitlines()

    # one block per daemon, headed by role, instance, pid and state
    assist_head = next(line for line in lines if line.startswith("assist default"))
    assert f"pid {state['pid']}" in assist_head and "running" in assist_head
    assert "up 1h02m" in assist_head and "stats 0.5s ago" in assist_head
    for name, value in [("queued", "123456"), ("dropped", "123400"), ("accepted", "56"), ("records_sent", "98765")]:
        assert any(line.split() == [name, value] for line in lines), name
    online_head = next(line for line in lines if line.startswith("online default"))
    assert "dead" in online_head
    assert any("stale pid file" in line for line in lines)
    assert any("nfreplay-online down" in line for line in lines)
    assert any(line.startswith("target default") and "installed" in line for line in lines)

    # the NFQUEUE table: headers, then one row per queue with every number
    header = next(i for i, line in enumerate(lines) if line.split()[:1] == ["queue"])
    assert lines[header].split() == ["queue", "portid", "waiting", "copy", "range", "q_dropped", "u_dropped", "id_seq"]
    assert lines[header + 1].split() == ["0", "12345", "0", "packet", "128", "0", "0", "42"]
    assert lines[header + 2].split() == ["1", "4026531", "17", "packet", "64", "3000001", "12", "987654321"]
    assert lines[header + 3].split() == ["65535", "0", "0", "meta", "0", "0", "0", "0"]
    # columns are aligned: every row ends where the header ends (numbers right-aligned)
    assert len({len(lines[header + i]) for i in range(4)}) == 1
    assert any("kernel drops" in line for line in lines)

    assert "route 198.18.1.0/24 via 198.18.0.4 proto 250" in text
    assert "nfreplay:assist:default: none" in text


def test_render_table_nfqueue_states(tmp_path: pathlib.Path) -> None:
    absent = status.render_table(status.collect(str(tmp_path), nfqueue_path=str(tmp_path / "none")))
    assert "not present" in absent and "no daemons" in absent
    (tmp_path / "nfq").write_text("")
    empty = status.render_table(status.collect(str(tmp_path), nfqueue_path=str(tmp_path / "nfq")))
    assert "no queue is bound" in empty
    unreadable = status.render_table(status.collect(str(tmp_path), nfqueue_path=str(tmp_path)))
    assert "cannot read" in unreadable


def test_render_table_exact_header_when_values_fit(tmp_path: pathlib.Path) -> None:
    (tmp_path / "nfq").write_text(kline(0, 1, 0, 0, 0, 0, 0, 1))
    text = status.render_table(status.collect(str(tmp_path), nfqueue_path=str(tmp_path / "nfq")))
    assert "queue  portid  waiting  copy  range  q_dropped  u_dropped  id_seq" in text


def test_render_json_round_trips(state: dict[str, object]) -> None:
    data = status.collect(
        str(state["dir"]), installed=lambda tag: ["x"], nfqueue_path=str(state["nfq"]), now=NOW
    )
    text = status.render_json(data)
    assert json.loads(text) == data
    assert text == status.render_json(json.loads(text))  # stable
    assert text.startswith('{\n  "daemons": [')  # sorted keys, indent 2
    top = list(json.loads(text))
    assert top == sorted(top)


def test_render_json_with_real_stats_file(tmp_path: pathlib.Path) -> None:
    paths = stats.state_paths(str(tmp_path), "assist", "default")
    counters = counters_type("A", ("queued", "dropped"))()
    counters.queued = 5  # type: ignore[attr-defined]
    stats.StatsFile(paths.stats).write(counters.snapshot(), {"queues": [0, 1]})
    data = status.collect(str(tmp_path), nfqueue_path=os.devnull)
    assert json.loads(status.render_json(data)) == data
    (d,) = data["daemons"]
    assert d["counters"] == {"queued": 5, "dropped": 0}
    text = status.render_table(data)
    assert "dropped" not in text and "(1 counters at 0 not shown: --all shows them)" in text
    text = status.render_table(data, show_all=True)
    assert "    dropped  0" in text
    # in a group, the counters come first, then the extras
    assert text.index("queued") < text.index("queues")
    assert "not shown" not in text


def test_render_table_groups_counters_with_rates(tmp_path: pathlib.Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    p = stats.state_paths(str(tmp_path), "online", "g")
    now = [NOW - 2.0]
    monkeypatch.setattr(stats.time, "time", lambda: now[0])
    monkeypatch.setattr(stats.time, "monotonic", lambda: now[0])
    sf = stats.StatsFile(p.stats, levels=["sessions_live"])
    sf.write({"sessions_opened": 0, "packets_sent": 0, "records_received": 0, "sessions_live": 0,
              "internal_errors": 0}, {"capture": {"dropped": 0}})
    now[0] = NOW - 1.0
    sf.write({"sessions_opened": 500, "packets_sent": 2500, "records_received": 1500,
              "sessions_live": 0, "internal_errors": 0}, {"capture": {"dropped": 0}})
    data = status.collect(str(tmp_path), nfqueue_path=str(tmp_path / "nq"), now=NOW)
    lines = status.render_table(data).split("NFQUEUE")[0].splitlines()
    heads = [line.split()[0] for line in lines if line.startswith("  ") and
             not line.startswith("    ") and not line.startswith("  (")]
    assert heads == ["sessions", "packets", "channel", "capture"]
    rows = {line.split()[0]: line.split()[1:] for line in lines if line.startswith("    ")}
    assert rows["sessions_opened"] == ["500", "500.0"]
    assert rows["packets_sent"] == ["2500", "2500.0"]
    assert rows["sessions_live"] == ["0"]  # a level: shown at 0, and no rate
    assert rows["capture.dropped"] == ["0"]
    assert "internal_errors" not in rows
    sessions = next(line for line in lines if line.split()[:1] == ["sessions"])
    assert sessions.split()[1:] == ["total", "/s"]


def test_render_table_flattens_nested_extras(tmp_path: pathlib.Path) -> None:
    p = stats.state_paths(str(tmp_path), "online", "x")
    stats.StatsFile(p.stats).write(
        {"packets_captured": 12345, "sessions_live": 3},
        {"capture": {"received": 7, "filter": "tcp and dst port 80"}, "peers": ["a:1", "b:2"],
         "errors": {}})
    text = status.render_table(status.collect(str(tmp_path), nfqueue_path=str(tmp_path / "nq")))
    lines = {line.split()[0]: line for line in text.splitlines() if line.startswith("  ")}
    assert lines["capture.filter"].split(None, 1)[1] == "tcp and dst port 80"
    assert lines["peers"].split(None, 1)[1] == "a:1, b:2"
    assert lines["errors"].split()[1] == "-"
    # numbers share one right-aligned column
    assert lines["packets_captured"].index("12345") + 5 == lines["sessions_live"].index("3") + 1


# ------------------------------------------------------------------------------ verdict


def write_daemon(d: pathlib.Path, role: str, pid: int, counters: dict[str, int],
                 extra: dict[str, object], rates: dict[str, float] | None = None) -> None:
    paths = stats.state_paths(str(d), role, "default")
    stats.write_pid(paths.pid, pid)
    document = {"role": role, "instance": "default", "pid": pid, "time": NOW - 0.5,
                "started": NOW - 60, "counters": counters, "extra": extra}
    if rates is not None:
        document["rates"] = rates
    pathlib.Path(paths.stats).write_text(json.dumps(document))


def test_verdict_exit_codes(tmp_path: pathlib.Path,
                            nfreplay_proc: subprocess.Popen[bytes]) -> None:
    nfq = tmp_path / "nfq"
    nfq.write_text(kline(0, nfreplay_proc.pid, 0, 2, 60, 0, 0, 9) + "\n")

    def judge(installed: dict[str, list[str]] | None = None) -> tuple[int, str]:
        data = status.collect(str(tmp_path), nfqueue_path=str(nfq), now=NOW,
                              installed=(lambda tag: (installed or {}).get(tag, [])))
        return status.verdict(data)

    assert judge() == (status.NOTHING, "NOTHING RUNNING: no nfreplay daemon")
    assert judge({"nfreplay:assist:default": ["[nft] x"]})[0] == status.NOTHING

    online_extra = {"channel": {"up": 2}, "capture": {"dropped": 0}}
    write_daemon(tmp_path, "online", nfreplay_proc.pid,
                 {"sessions_opened": 100, "sessions_established": 100}, online_extra)
    write_daemon(tmp_path, "assist", nfreplay_proc.pid, {}, {"queue": 0})
    rules = {"nfreplay:assist:default": ["[nft] -A PREROUTING ... NFQUEUE"]}
    code, line = judge(rules)
    assert (code, line) == (status.HEALTHY, "HEALTHY: online default running, "
                                            "assist default running")

    # Degraded: handshakes failing, no control connection.
    write_daemon(tmp_path, "online", nfreplay_proc.pid,
                 {"sessions_opened": 100, "sessions_established": 10},
                 {"channel": {"up": 0}, "capture": {"dropped": 0}})
    code, line = judge(rules)
    assert code == status.DEGRADED and "only 10 of 100 sessions" in line
    assert "no control connection" in line

    # What happens now counts, not the totals: a million good sessions hide no failing
    # handshakes, and drops long ago do not keep it degraded.
    write_daemon(tmp_path, "online", nfreplay_proc.pid,
                 {"sessions_opened": 10**6, "sessions_established": 10**6 - 500},
                 {"channel": {"up": 2}, "capture": {"dropped": 7, "dropped_last_10s": 0}},
                 rates={"sessions_opened": 50.0, "sessions_established": 0.0})
    write_daemon(tmp_path, "assist", nfreplay_proc.pid, {},
                 {"queue": 0, "queue_dropped_last_10s": 0})
    code, line = judge(rules)
    assert code == status.DEGRADED and "only 0 of 500 sessions in the last 10 s" in line
    assert "dropped" not in line
    write_daemon(tmp_path, "online", nfreplay_proc.pid,
                 {"sessions_opened": 10**6, "sessions_established": 10**6 - 500},
                 {"channel": {"up": 2}, "capture": {"dropped": 9, "dropped_last_10s": 2}},
                 rates={"sessions_opened": 50.0, "sessions_established": 50.0})
    code, line = judge(rules)
    assert code == status.DEGRADED and line.endswith(
        "the capture dropped 2 packets in the last 10 s"), line

    # Broken: the assist's rules are gone; then a route missing; then a dead daemon.
    assert judge({})[0] == status.BROKEN
    code, line = judge({**rules, "nfreplay:target:default": [
        "MISSING: ip route add 198.18.1.0/24 via 198.18.0.4 proto 156 table 156"]})
    assert code == status.BROKEN and "via 198.18.0.4" in line
    pathlib.Path(stats.state_paths(str(tmp_path), "online", "default").pid).write_text(
        str(dead_pid()))
    code, line = judge(rules)
    assert code == status.BROKEN and "online default is dead" in line


def test_watch_redraws_until_interrupted_and_exits_with_the_last_verdict() -> None:
    import io

    from nfreplay.cli.status import watch

    verdicts = iter([(status.HEALTHY, "table 1\n"), (status.DEGRADED, "table 2\n")])
    naps: list[float] = []

    def look() -> tuple[int, str]:
        try:
            return next(verdicts)
        except StopIteration:
            raise KeyboardInterrupt from None

    out = io.StringIO()
    assert watch(look, 2.5, out=out, sleep=naps.append) == status.DEGRADED
    text = out.getvalue()
    assert text.index("table 1") < text.index("table 2")
    assert text.count("every 2.5 s") == 2 and "\x1b[2J" not in text  # not a terminal
    assert naps == [2.5, 2.5]


def test_drop_watch_warns_once_per_rise_with_its_hint(caplog: pytest.LogCaptureFixture) -> None:
    from nfreplay.engine.watch import DropWatch

    watch = DropWatch("the capture", "add --workers")
    with caplog.at_level("WARNING"):
        watch.check(0, 10)
        watch.check(5, 10)
        watch.check(5, 10)
        watch.check(12, 10)
        watch.check(12, 10)
    warnings = [r.getMessage() for r in caplog.records]
    assert warnings == ["the capture dropped 5 packets in the last 10 s: add --workers",
                        "the capture dropped 7 packets in the last 10 s: add --workers"]


def test_probe_is_zero_while_degraded_and_keeps_broken_and_nothing(
        tmp_path: pathlib.Path, nfreplay_proc: subprocess.Popen[bytes],
        capsys: pytest.CaptureFixture[str]) -> None:
    """`nfreplay status --probe` (a container's liveness/readiness probe): one line, exit 0
    unless broken (2) or nothing running (3)."""
    from nfreplay.cli.status import status_main

    def probe() -> tuple[int, list[str]]:
        code = status_main(["--probe", "--no-rules", "--state-dir", str(tmp_path),
                            "--config", os.devnull])
        return code, capsys.readouterr().out.splitlines()

    assert probe() == (status.NOTHING, ["NOTHING RUNNING: no nfreplay daemon"])
    write_daemon(tmp_path, "online", nfreplay_proc.pid, {"sessions_opened": 0},
                 {"channel": {"up": 0}, "capture": {"dropped": 0}})
    pathlib.Path(tmp_path / "online-default.stats.json").write_text(json.dumps({
        "role": "online", "instance": "default", "pid": nfreplay_proc.pid, "time": time.time(),
        "started": time.time() - 5, "counters": {}, "extra": {"channel": {"up": 0}}}))
    code, lines = probe()
    assert code == 0 and len(lines) == 1 and lines[0].startswith("DEGRADED: ") \
        and "no control connection" in lines[0], lines
    assert status_main(["--no-rules", "--state-dir", str(tmp_path), "--config",
                        os.devnull]) == status.DEGRADED  # without --probe: degraded is 1
    capsys.readouterr()
    pathlib.Path(tmp_path / "online-default.pid").write_text(str(dead_pid()))
    code, lines = probe()
    assert code == status.BROKEN and "online default is dead" in lines[0], lines
