"""nfreplay.stats: counters, atomic stats files, state-file names, pid files."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from nfreplay import stats
from nfreplay.counters import Counters, counters_type
from nfreplay.stats import StatePaths, StatsFile


def spawn(*argv: str) -> subprocess.Popen[bytes]:
    """A sleeping python whose command line ends with ``argv`` (e.g. "nfreplay")."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)", *argv])
    # Wait until the child has exec'd, so /proc/<pid>/cmdline shows the final argv.
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            if b"time.sleep(30)" in pathlib.Path(f"/proc/{proc.pid}/cmdline").read_bytes():
                break
        except OSError:
            pass
        time.sleep(0.01)
    return proc


@pytest.fixture
def nfreplay_proc() -> Iterator[subprocess.Popen[bytes]]:
    proc = spawn("nfreplay")
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait()


# ------------------------------------------------------------------------------ Counters


class Online(Counters):
    __slots__ = ("captured", "selected", "sessions")


class OnlineMore(Online):
    __slots__ = ("retransmits",)


def test_counters_start_at_zero_and_count() -> None:
    c = Online()
    assert c.snapshot() == {"captured": 0, "selected": 0, "sessions": 0}
    c.captured += 3  # type: ignore[attr-defined]
    c.sessions += 1  # type: ignore[attr-defined]
    assert c.snapshot() == {"captured": 3, "selected": 0, "sessions": 1}
    assert list(c.snapshot()) == ["captured", "selected", "sessions"]
    assert "captured=3" in repr(c)


def test_snapshot_is_a_copy() -> None:
    c = Online()
    snap = c.snapshot()
    c.captured += 1  # type: ignore[attr-defined]
    assert snap["captured"] == 0
    snap["captured"] = 99
    assert c.captured == 1  # type: ignore[attr-defined]


def test_counters_have_no_dict_so_typos_fail() -> None:
    c = Online()
    assert not hasattr(c, "__dict__")
    with pytest.raises(AttributeError):
        c.captrued = 1  # type: ignore[attr-defined]


def test_counters_inherit_in_order() -> None:
    c = OnlineMore()
    c.retransmits += 2  # type: ignore[attr-defined]
    assert c.snapshot() == {"captured": 0, "selected": 0, "sessions": 0, "retransmits": 2}


class Declared(Counters):
    """Counters declared the usual way: annotations become the slots."""

    queued: int
    dropped: int


def test_counters_declared_as_annotations_get_slots() -> None:
    c = Declared()
    c.queued += 2
    assert c.snapshot() == {"queued": 2, "dropped": 0}
    assert Declared.__slots__ == ("queued", "dropped") and not hasattr(c, "__dict__")
    with pytest.raises(AttributeError):
        c.queud = 1  # type: ignore[attr-defined]


@pytest.mark.parametrize("names", [("ok", "ok"), ("_private",), ("snapshot",), ("names",), ("not-ident",)])
def test_bad_counter_names(names: tuple[str, ...]) -> None:
    with pytest.raises(TypeError):
        counters_type("Bad", names)


def test_counters_type_from_names() -> None:
    Assist = counters_type("AssistCounters", ("queued", "dropped"))
    a = Assist()
    a.dropped += 5  # type: ignore[attr-defined]
    assert Assist.__name__ == "AssistCounters"
    assert issubclass(Assist, Counters)
    assert a.snapshot() == {"queued": 0, "dropped": 5}
    assert Assist.names == ("queued", "dropped")


# ------------------------------------------------------------------------------ state paths


def test_state_paths() -> None:
    p = stats.state_paths("/run/nfreplay", "assist", "lab-1")
    assert p == StatePaths(
        pid="/run/nfreplay/assist-lab-1.pid",
        stats="/run/nfreplay/assist-lab-1.stats.json",
        journal="/run/nfreplay/assist-lab-1.journal.json",
    )


@pytest.mark.parametrize(("role", "instance"), [("status", "default"), ("assist", "a/b"), ("assist", "")])
def test_state_paths_rejects_bad_names(role: str, instance: str) -> None:
    with pytest.raises(ValueError):
        stats.state_paths("/run/nfreplay", role, instance)


@pytest.mark.parametrize("role", stats.STATE_ROLES)
@pytest.mark.parametrize("instance", ["default", "a-b-c", "x.y_z"])
def test_parse_state_name_inverts_state_paths(role: str, instance: str) -> None:
    p = stats.state_paths("/s", role, instance)
    assert stats.parse_state_name(p.pid) == (role, instance, "pid")
    assert stats.parse_state_name(p.stats) == (role, instance, "stats")
    assert stats.parse_state_name(p.journal) == (role, instance, "journal")


@pytest.mark.parametrize(
    "name",
    [
        ".assist-default.stats.json.abc.tmp",
        "assist-default.json",
        "assist.stats.json",
        "intercept-default.pid",
        "assist-.pid",
        "README",
        "assist-default.stats.json~",
    ],
)
def test_parse_state_name_ignores_other_files(name: str) -> None:
    assert stats.parse_state_name(name) is None


# ------------------------------------------------------------------------------ StatsFile


def test_write_read_round_trip(tmp_path: pathlib.Path) -> None:
    path = stats.state_paths(str(tmp_path), "online", "default").stats
    sf = StatsFile(path, started=1000.0)
    before = time.time()
    sf.write({"captured": 10, "sessions": 2}, extra={"assistants_connected": 1, "peer": "198.18.0.4"})
    after = time.time()

    doc = stats.read(path)
    assert doc is not None
    assert doc["role"] == "online"
    assert doc["instance"] == "default"
    assert doc["pid"] == os.getpid()
    assert before <= doc["time"] <= after
    assert doc["started"] == 1000.0
    assert doc["counters"] == {"captured": 10, "sessions": 2}
    assert doc["extra"] == {"assistants_connected": 1, "peer": "198.18.0.4"}
    assert doc["levels"] == [] and doc["rates"] == {}  # no history yet: no rates
    assert sorted(doc) == ["counters", "extra", "instance", "levels", "pid", "rates", "role",
                           "started", "time"]


def test_rates_over_the_window_and_none_for_levels(tmp_path: pathlib.Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    now = [1000.0]
    monkeypatch.setattr(stats.time, "time", lambda: now[0])
    monkeypatch.setattr(stats.time, "monotonic", lambda: now[0])
    sf = StatsFile(str(tmp_path / "online-r.stats.json"), levels=["live"])
    for second in range(31):  # 100 opened per second; a level that goes up and down
        now[0] = 1000.0 + second
        sf.write({"opened": 100 * second, "live": second % 3})
    doc = stats.read(sf.path)
    assert doc is not None and doc["levels"] == ["live"]
    assert doc["rates"] == {"opened": 100.0}
    # Taken over the last RATE_WINDOW seconds, not the whole run: a pause shows.
    for second in range(31, 31 + int(stats.RATE_WINDOW)):
        now[0] = 1000.0 + second
        sf.write({"opened": 3000, "live": 0})
    assert sf.last is not None and sf.last["rates"] == {"opened": 0.0}


def test_counter_order_survives_the_file(tmp_path: pathlib.Path) -> None:
    path = str(tmp_path / "online-a.stats.json")
    StatsFile(path).write(Online().snapshot())
    doc = stats.read(path)
    assert doc is not None and list(doc["counters"]) == ["captured", "selected", "sessions"]


def test_write_replaces_and_leaves_no_temp_files(tmp_path: pathlib.Path) -> None:
    path = str(tmp_path / "assist-x.stats.json")
    sf = StatsFile(path)
    c = counters_type("C", ("queued",))()
    for i in range(5):
        c.queued = i  # type: ignore[attr-defined]
        sf.write(c.snapshot())
    doc = stats.read(path)
    assert doc is not None and doc["counters"] == {"queued": 4}
    assert doc["extra"] == {}
    assert os.listdir(tmp_path) == ["assist-x.stats.json"]
    assert os.stat(path).st_mode & 0o777 == 0o644


def test_failed_write_keeps_the_previous_file(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = str(tmp_path / "assist-x.stats.json")
    sf = StatsFile(path)
    sf.write({"queued": 1})

    def boom(src: str, dst: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError):
        sf.write({"queued": 2})
    monkeypatch.undo()
    doc = stats.read(path)
    assert doc is not None and doc["counters"] == {"queued": 1}
    assert os.listdir(tmp_path) == ["assist-x.stats.json"]


def test_write_creates_the_state_dir(tmp_path: pathlib.Path) -> None:
    path = str(tmp_path / "run" / "nfreplay" / "online-a.stats.json")
    StatsFile(path).write({"n": 1})
    assert stats.read(path) is not None


def test_explicit_role_and_instance(tmp_path: pathlib.Path) -> None:
    path = str(tmp_path / "whatever.json")
    StatsFile(path, role="assist", instance="q1").write({})
    doc = stats.read(path)
    assert doc is not None and (doc["role"], doc["instance"]) == ("assist", "q1")


def test_role_needed_when_the_name_does_not_say(tmp_path: pathlib.Path) -> None:
    with pytest.raises(ValueError):
        StatsFile(str(tmp_path / "whatever.json"))
    with pytest.raises(ValueError):
        StatsFile(str(tmp_path / "assist-x.pid"))


def test_non_json_extra_does_not_break_the_write(tmp_path: pathlib.Path) -> None:
    path = str(tmp_path / "online-a.stats.json")
    StatsFile(path).write({"n": 1}, extra={"path": pathlib.Path("/x")})
    doc = stats.read(path)
    assert doc is not None and doc["extra"] == {"path": "/x"}


def test_read_missing(tmp_path: pathlib.Path) -> None:
    assert stats.read(str(tmp_path / "online-a.stats.json")) is None


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"{",
        b'{"role": "online", "counters": {"n": 1}',  # truncated
        b"\xff\xfe",
        b"[1, 2]",
        b'{"role": "online"}',
        b'{"counters": [1]}',
        b'{"counters": {"n": "1"}}',
        b'{"counters": {"n": true}}',
        b'{"counters": {}, "time": "now"}',
        b'{"counters": {}, "extra": 3}',
    ],
)
def test_read_corrupt(tmp_path: pathlib.Path, content: bytes) -> None:
    path = tmp_path / "online-a.stats.json"
    path.write_bytes(content)
    assert stats.read(str(path)) is None


def test_read_minimal_valid(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "online-a.stats.json"
    path.write_text(json.dumps({"counters": {"n": 1}}))
    assert stats.read(str(path)) == {"counters": {"n": 1}}


# ------------------------------------------------------------------------------ pid files


def test_running_pid_live_nfreplay_process(tmp_path: pathlib.Path, nfreplay_proc: subprocess.Popen[bytes]) -> None:
    pid_path = str(tmp_path / "assist-default.pid")
    stats.write_pid(pid_path, nfreplay_proc.pid)
    assert pathlib.Path(pid_path).read_text() == f"{nfreplay_proc.pid}\n"
    assert stats.running_pid(pid_path) == nfreplay_proc.pid
    assert stats.pid_alive(nfreplay_proc.pid)


def test_running_pid_dead_process(tmp_path: pathlib.Path) -> None:
    proc = spawn("nfreplay")
    try:
        pid_path = tmp_path / "assist-default.pid"
        pid_path.write_text(f"{proc.pid}\n")
        assert stats.running_pid(str(pid_path)) == proc.pid
        proc.kill()
        proc.wait()  # reaped: the pid no longer exists
        assert stats.running_pid(str(pid_path)) is None
    finally:
        proc.kill()
        proc.wait()


def test_running_pid_zombie_is_not_running(tmp_path: pathlib.Path) -> None:
    proc = spawn("nfreplay")
    try:
        pid_path = tmp_path / "assist-default.pid"
        pid_path.write_text(str(proc.pid))
        proc.kill()
        # Not reaped yet: a zombie still answers kill(pid, 0) but has an empty cmdline.
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            status = pathlib.Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
            if status == "Z":
                break
            time.sleep(0.01)
        assert stats.running_pid(str(pid_path)) is None
    finally:
        proc.kill()
        proc.wait()


def test_running_pid_reused_by_another_program(tmp_path: pathlib.Path) -> None:
    proc = spawn()  # alive, but its command line does not mention nfreplay
    try:
        pid_path = tmp_path / "assist-default.pid"
        pid_path.write_text(str(proc.pid))
        assert stats.running_pid(str(pid_path)) is None
    finally:
        proc.kill()
        proc.wait()


@pytest.mark.parametrize("content", ["", "abc", "-1", "0", "12 34", "1.5"])
def test_running_pid_stale_or_garbage_file(tmp_path: pathlib.Path, content: str) -> None:
    pid_path = tmp_path / "assist-default.pid"
    pid_path.write_text(content)
    assert stats.running_pid(str(pid_path)) is None


def test_running_pid_missing_file(tmp_path: pathlib.Path) -> None:
    assert stats.running_pid(str(tmp_path / "assist-default.pid")) is None


def test_write_pid_defaults_to_this_process(tmp_path: pathlib.Path) -> None:
    pid_path = tmp_path / "online-default.pid"
    stats.write_pid(str(pid_path))
    assert pid_path.read_text() == f"{os.getpid()}\n"


def test_workers_extras_merge_into_one_instance() -> None:
    from nfreplay.stats import merge_online

    def worker(n: int) -> dict:
        return {"capture": {"interface": "eth0", "filter": "f", "received": n, "dropped": 1,
                            "ifdropped": 0, "dropped_last_10s": 0},
                "channel": {"up": 2, "drops": 0, "announces_failed": n, "assistants": ["a"]},
                "send_errors": {"EPERM": n}, "sessions_in_table": 10 * n,
                "inject": {"mode": "tunnel", "tunnel": "vxlan",
                           "outer": "UDP port 36525, 50 bytes per packet"},
                "process": {"cpu_user_s": 1.5, "cpu_sys_s": 0.5, "max_rss_kib": 100}}

    merged = merge_online([worker(1), worker(2)])  # type: ignore[list-item]
    assert merged["capture"] == {"interface": "eth0", "filter": "f", "received": 3,
                                 "dropped": 2, "ifdropped": 0, "dropped_last_10s": 0}
    assert merged["channel"]["up"] == 4 and merged["channel"]["assistants"] == ["a"]
    assert merged["send_errors"] == {"EPERM": 3} and merged["sessions_in_table"] == 30
    # Text is kept, not summed: a tunnel's description is the same in every worker.
    assert merged["inject"]["outer"] == "UDP port 36525, 50 bytes per packet"
    assert merged["process"] == {"cpu_user_s": 3.0, "cpu_sys_s": 1.0, "max_rss_kib": 200}
