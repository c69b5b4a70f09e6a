"""The stats file the daemons publish their counters in (`nfreplay.counters`), and state-file
naming.

Invariants:
  * ``Counters.snapshot()`` copies the counters into a dict and ``StatsFile.write`` publishes
    it, about once a second, off the hot path.
  * The document names its ``levels`` (counters that go up and down) and carries ``rates``:
    per second, for every other counter, over the last ``RATE_WINDOW`` seconds of writes.
  * A stats file is replaced atomically (temp file in the same directory + ``os.replace``), so
    a reader sees either the previous or the next complete snapshot, never a torn one.
  * Every state file is named by ``state_paths``: ``<state_dir>/<role>-<instance>.<kind>``.
    Roles contain no "-", so the first "-" of a file name separates role from instance.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypedDict, cast

from nfreplay.config import INSTANCE_RE

__all__ = [
    "ProcessStats",
    "CaptureStats",
    "ChannelStats",
    "WorkerStats",
    "OnlineExtra",
    "AssistExtra",
    "TargetExtra",
    "merge_online",
    "STATE_ROLES",
    "STATE_SUFFIXES",
    "StatsFile",
    "read",
    "StatePaths",
    "state_paths",
    "parse_state_name",
    "pid_alive",
    "running_pid",
    "write_pid",
]

STATE_ROLES = ("online", "assist", "target")
"""Roles that own state files (``target`` only ever has a journal)."""

RATE_WINDOW = 10.0
"""Seconds of history the published ``rates`` are taken over (at least one write apart)."""

STATE_SUFFIXES = {"pid": ".pid", "stats": ".stats.json", "journal": ".journal.json"}
"""File-name suffix of each kind of state file."""


# --------------------------------------------------------------------------------------------
# The document's "extra": what each role publishes besides its counters, declared once. The
# daemons build it (engine.online_run, engine.assist_run, cli.target), `--workers` merges the
# workers' (merge_online), and `nfreplay status` and the metrics endpoint read it: all by these
# names. A reader still treats a document as untrusted JSON (it may come from another version).


class ProcessStats(TypedDict):
    cpu_user_s: float
    cpu_sys_s: float
    max_rss_kib: int


class _Common(TypedDict, total=False):
    process: ProcessStats  # reporting.publish adds it, and `compiled`
    compiled: bool


class CaptureStats(TypedDict):
    interface: str  # the interface, the capture file, or "vxlan:ADDR:PORT" (mirror input)
    filter: str
    received: int
    dropped: int
    ifdropped: int
    dropped_last_10s: int


class ChannelStats(TypedDict):
    up: int  # live control connections
    drops: int
    announces_failed: int
    assistants: list[str]


class WorkerStats(TypedDict):
    pid: int
    sessions_opened: int
    sessions_live: int


class OnlineExtra(_Common, total=False):
    capture: CaptureStats
    channel: ChannelStats
    send_errors: dict[str, int]  # errno name -> sends refused
    inject: dict[str, Any]  # the sender's own: mode, paths, through_kernel, tunnel, outer
    sessions_in_table: int
    recording: dict[str, Any]
    client_pairs_in_use: int
    toa_options_seen: int
    workers: list[WorkerStats]  # with --workers: one per worker


class AssistExtra(_Common, total=False):
    queue: int
    listen: str
    peers: list[str]
    queue_dropped_last_10s: int
    recording: dict[str, Any]


class TargetExtra(_Common, total=False):
    missing_routes: list[str]


def _sum(dicts: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Numbers summed key by key; anything else kept from the first."""
    out: dict[str, Any] = {}
    for d in dicts:
        for k, v in d.items():
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                out[k] = out.get(k, 0) + v
            else:
                out.setdefault(k, v)
    return out


def merge_online(extras: list[OnlineExtra]) -> OnlineExtra:
    """The workers' extras as one instance's: figures summed, descriptions kept from the
    first worker (they are the same in every one)."""
    first = extras[0]
    merged: OnlineExtra = {**first}
    merged["capture"] = cast(CaptureStats, {**first["capture"],
                                            **_sum(e["capture"] for e in extras)})
    merged["channel"] = cast(ChannelStats, {**first["channel"],
                                            **_sum(e["channel"] for e in extras)})
    merged["send_errors"] = _sum(e["send_errors"] for e in extras)
    merged["inject"] = _sum(e["inject"] for e in extras)
    merged["sessions_in_table"] = sum(e["sessions_in_table"] for e in extras)
    merged["process"] = cast(ProcessStats, _sum(e["process"] for e in extras))
    return merged


# --------------------------------------------------------------------------------------------
# State-file naming


@dataclass(frozen=True)
class StatePaths:
    """The state files of one (role, instance)."""

    pid: str
    stats: str
    journal: str


def _check_name(role: str, instance: str) -> None:
    if role not in STATE_ROLES:
        raise ValueError(f"role must be one of {STATE_ROLES}, got {role!r}")
    if not INSTANCE_RE.fullmatch(instance):
        raise ValueError(f"bad instance name {instance!r}")


def state_paths(state_dir: str, role: str, instance: str) -> StatePaths:
    """``<state_dir>/<role>-<instance>.pid|.stats.json|.journal.json``."""
    _check_name(role, instance)
    base = os.path.join(state_dir, f"{role}-{instance}")
    return StatePaths(
        pid=base + STATE_SUFFIXES["pid"],
        stats=base + STATE_SUFFIXES["stats"],
        journal=base + STATE_SUFFIXES["journal"],
    )


def parse_state_name(filename: str) -> tuple[str, str, str] | None:
    """``"assist-default.stats.json"`` -> ``("assist", "default", "stats")``; None if it is not
    a state file name (temp files, foreign files, bad role or instance)."""
    name = os.path.basename(filename)
    # Longest suffix first: ".stats.json" and ".journal.json" before anything shorter.
    for kind, suffix in sorted(STATE_SUFFIXES.items(), key=lambda kv: -len(kv[1])):
        if name.endswith(suffix):
            stem = name[: -len(suffix)]
            role, sep, instance = stem.partition("-")
            if sep and role in STATE_ROLES and INSTANCE_RE.fullmatch(instance):
                return role, instance, kind
            return None
    return None


# --------------------------------------------------------------------------------------------
# Stats files


def _atomic_write(path: str, data: bytes, mode: int = 0o644) -> None:
    directory = os.path.dirname(path) or "."
    try:
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{os.path.basename(path)}.", suffix=".tmp")
    except FileNotFoundError:
        os.makedirs(directory, mode=0o755, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{os.path.basename(path)}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        # mkstemp creates 0600; `nfreplay status` may run as another user. Counters are not
        # secret. No fsync: these files live on tmpfs and only matter while the daemon lives.
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


class StatsFile:
    """The stats file of one daemon, rewritten about once a second.

    ``role`` and ``instance`` default to what the file name says (``<role>-<instance>.stats.json``,
    as made by ``state_paths``); ``started`` defaults to the time the object is created.
    ``levels`` names the counters that are levels (``Counters.levels``): they get no rate.
    ``last`` is the document last written (for the metrics endpoint), or None.
    """

    def __init__(
        self,
        path: str,
        *,
        role: str | None = None,
        instance: str | None = None,
        started: float | None = None,
        levels: Iterable[str] = (),
    ) -> None:
        if role is None or instance is None:
            parsed = parse_state_name(path)
            if parsed is None or parsed[2] != "stats":
                raise ValueError(f"{path}: not a <role>-<instance>.stats.json name; pass role and instance")
            role = parsed[0] if role is None else role
            instance = parsed[1] if instance is None else instance
        self.path = path
        self.role = role
        self.instance = instance
        self.started = time.time() if started is None else started
        self.levels = frozenset(levels)
        self._history: deque[tuple[float, Mapping[str, object]]] = deque()
        self.last: dict[str, Any] | None = None

    def _rates(self, now: float, snapshot: Mapping[str, object]) -> dict[str, float]:
        """Per second over the last RATE_WINDOW seconds (the oldest write kept that is at
        least that old, else the oldest there is); {} on the first write."""
        history = self._history
        while len(history) > 1 and now - history[1][0] >= RATE_WINDOW:
            history.popleft()
        rates: dict[str, float] = {}
        if history and now > history[0][0]:
            then, old = history[0]
            levels = self.levels
            for name, value in snapshot.items():
                before = old.get(name, 0)
                if name not in levels and isinstance(value, int) and isinstance(before, int):
                    rates[name] = round((value - before) / (now - then), 1)
        history.append((now, snapshot))
        return rates

    def write(self, snapshot: Mapping[str, object], extra: Mapping[str, object] | None = None) -> None:
        """Atomically replace the file with ``snapshot`` (the counters) and ``extra`` (anything
        else worth showing: live sessions, connected peers...). Raises OSError."""
        now = time.time()
        counters = dict(snapshot)
        document = {
            "role": self.role,
            "instance": self.instance,
            "pid": os.getpid(),
            "time": now,
            "started": self.started,
            "counters": counters,
            "levels": sorted(self.levels),
            "rates": self._rates(time.monotonic(), counters),  # a clock step changes no rate
            "extra": dict(extra or {}),
        }
        self.last = document
        # No sort_keys: counters keep their declaration order (captured, selected, sessions...
        # reads as a funnel in `status`). default=str: a stray non-JSON value in `extra` must
        # not stop the daemon's stats.
        data = json.dumps(document, indent=1, default=str).encode() + b"\n"
        _atomic_write(self.path, data)

    def __repr__(self) -> str:
        return f"StatsFile({self.path!r}, role={self.role!r}, instance={self.instance!r})"


def read(path: str) -> dict[str, Any] | None:
    """Load a stats file; None if it is missing, unreadable or not a stats document."""
    try:
        with open(path, "rb") as fh:
            document = json.loads(fh.read())
    except (OSError, ValueError):
        return None
    if not isinstance(document, dict):
        return None
    counters = document.get("counters")
    if not isinstance(counters, dict) or not all(
        isinstance(v, int) and not isinstance(v, bool) for v in counters.values()
    ):
        return None
    for key in ("time", "started"):
        value = document.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
            return None
    if not isinstance(document.get("extra", {}), dict):
        return None
    return document


# --------------------------------------------------------------------------------------------
# Pid files


def write_pid(path: str, pid: int | None = None) -> None:
    """Atomically write ``pid`` (default: this process) to ``path``, as ``running_pid`` reads it."""
    _atomic_write(path, f"{os.getpid() if pid is None else pid}\n".encode())


def pid_alive(pid: int) -> bool:
    """True if ``pid`` is a live (non-zombie) process whose command line mentions nfreplay.

    The command-line check guards against a pid reused by an unrelated process after a crash.
    """
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # alive, owned by someone else (a root daemon seen by a non-root `status`)
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            cmdline = fh.read()
    except FileNotFoundError:
        return False  # exited in between
    except PermissionError:
        return True  # cannot tell; os.kill said it exists
    # A zombie's cmdline is empty, and it is not running anything.
    return b"nfreplay" in cmdline


def running_pid(pid_path: str) -> int | None:
    """The pid in ``pid_path`` if that process is alive and is an nfreplay process, else None
    (no file, garbage in it, or a stale file left by a crash)."""
    try:
        with open(pid_path, "rb") as fh:
            text = fh.read(64).decode("ascii", "replace").strip()
    except OSError:
        return None
    if not text.isdigit():
        return None
    pid = int(text)
    return pid if pid_alive(pid) else None
