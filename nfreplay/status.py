"""What `nfreplay status` shows, as plain data, and its two renderings (table and JSON).

Invariants:
  * ``collect`` returns only JSON types (dict, list, str, int, float, bool, None), so
    ``json.loads(render_json(data)) == data``.
  * This module never touches iptables, routes or sockets: installed rules/routes come from a
    callable the CLI passes in, and everything else from files (the state directory and
    /proc/net/netfilter/nfnetlink_queue).
  * Nothing here raises on a missing or odd file: status shows what it can and says what it
    could not read.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any, cast

from nfreplay import stats
from nfreplay.errors import NfreplayError

__all__ = [
    "NFQUEUE_PATH",
    "QueueInfo",
    "QueueList",
    "parse_nfqueue",
    "read_nfqueue",
    "collect",
    "render_table",
    "render_json",
    "owner_tag",
]

NFQUEUE_PATH = "/proc/net/netfilter/nfnetlink_queue"

COPY_MODES = {0: "none", 1: "meta", 2: "packet"}
"""NFQNL_COPY_NONE / _META / _PACKET, as the kernel prints them in the copy_mode column."""

STALE_AFTER = 5.0
"""Seconds after which a running daemon's stats snapshot is flagged as old (it writes ~1/s)."""


def owner_tag(role: str, instance: str) -> str:
    """The owner tag carried by every rule/route of (role, instance): ``nfreplay:<role>:<instance>``."""
    return f"nfreplay:{role}:{instance}"


# --------------------------------------------------------------------------------------------
# /proc/net/netfilter/nfnetlink_queue


@dataclass(frozen=True)
class QueueInfo:
    """One line of /proc/net/netfilter/nfnetlink_queue (one bound queue, this netns only).

    The kernel prints (``nfqnl_seq_show``) ``"%5u %6u %5u %1u %5u %5u %5u %8u %2d"``: the fields
    below in this order and a constant 1. All are u32 and wrap.
    """

    queue_number: int
    peer_portid: int  # netlink port id of the process bound to the queue
    queue_total: int  # packets waiting for a verdict now
    copy_mode: int  # 0 none, 1 meta, 2 packet
    copy_range: int  # bytes of each packet copied to user space
    queue_dropped: int  # dropped by the kernel: queue full (maxlen)
    user_dropped: int  # dropped by the kernel: netlink socket buffer full (ENOBUFS)
    id_sequence: int  # id of the last packet queued


class QueueList(list[QueueInfo]):
    """The queues read from the file, plus why there may be none.

    ``present`` is False when the file does not exist: nfnetlink_queue is not loaded, so no
    NFQUEUE is in use. ``error`` is set when it exists but could not be read (it is 0440 root).
    """

    def __init__(
        self, queues: Iterable[QueueInfo] = (), *, present: bool = True, error: str | None = None
    ) -> None:
        super().__init__(queues)
        self.present = present
        self.error = error


def parse_nfqueue(text: str) -> list[QueueInfo]:
    """Parse the file's text; lines that do not have the kernel's shape are skipped."""
    queues = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) < 8 or not all(p.isdigit() for p in parts[:8]):
            continue
        queues.append(QueueInfo(*(int(p) for p in parts[:8])))
    return queues


def read_nfqueue(path: str = NFQUEUE_PATH) -> QueueList:
    """The queues bound in *this process's network namespace* (the file is per netns)."""
    try:
        with open(path, encoding="ascii", errors="replace") as fh:
            text = fh.read()
    except FileNotFoundError:
        return QueueList(present=False)
    except OSError as exc:
        return QueueList(error=f"{path}: {exc.strerror or exc}")
    return QueueList(parse_nfqueue(text))


# --------------------------------------------------------------------------------------------
# collect


def _daemon(state_dir: str, role: str, instance: str, now: float) -> dict[str, Any]:
    paths = stats.state_paths(state_dir, role, instance)
    snapshot = stats.read(paths.stats)
    pid_file = os.path.exists(paths.pid)
    pid = stats.running_pid(paths.pid) if pid_file else None
    running = pid is not None
    if not pid_file and snapshot is not None and isinstance(snapshot.get("pid"), int):
        # No pid file (e.g. a foreground run); the stats file still says who wrote it.
        running = stats.pid_alive(snapshot["pid"])
        pid = snapshot["pid"] if running else None
    journal = os.path.exists(paths.journal)

    if running:
        state = "running"
    elif pid_file:
        state = "dead"  # pid file left behind: crashed or killed
    elif role == "target":
        state = "installed" if journal else "down"  # not a daemon: only a journal
    else:
        state = "stopped"

    stats_time = snapshot.get("time") if snapshot else None
    return {
        "role": role,
        "instance": instance,
        "owner": owner_tag(role, instance),
        "state": state,
        "running": running,
        "pid": pid,
        "started": snapshot.get("started") if snapshot else None,
        "stats_time": stats_time,
        "stats_age": (now - stats_time) if isinstance(stats_time, (int, float)) else None,
        "counters": dict(snapshot["counters"]) if snapshot else {},
        "levels": list(snapshot.get("levels") or []) if snapshot else [],
        "rates": dict(snapshot.get("rates") or {}) if snapshot else {},
        "extra": dict(snapshot.get("extra") or {}) if snapshot else {},
        "files": {
            "pid": paths.pid if pid_file else None,
            "stats": paths.stats if os.path.exists(paths.stats) else None,
            "journal": paths.journal if journal else None,
        },
    }


def collect(
    state_dir: str,
    instance: str | None = None,
    *,
    installed: Callable[[str], list[str]] | None = None,
    nfqueue_path: str = NFQUEUE_PATH,
    now: float | None = None,
) -> dict[str, Any]:
    """Everything `nfreplay status` shows, as JSON-ready data.

    Daemons are found from the pid / stats / journal files in ``state_dir`` (only ``instance``'s
    if given). ``installed(owner_tag)`` returns the rules/routes carrying that owner tag; it is
    asked for every (role, instance) found, and for every role of ``instance`` (default
    "default") so that leftovers of a crash show even without state files. Without it the
    "installed" key is omitted.
    """
    now = time.time() if now is None else now
    try:
        names = os.listdir(state_dir)
        dir_error = None
    except FileNotFoundError:
        names, dir_error = [], "no such directory"
    except OSError as exc:
        names, dir_error = [], exc.strerror or str(exc)

    found: set[tuple[str, str]] = set()
    for name in names:
        parsed = stats.parse_state_name(name)
        if parsed is not None and (instance is None or parsed[1] == instance):
            found.add((parsed[0], parsed[1]))

    def order(pair: tuple[str, str]) -> tuple[int, str]:
        return stats.STATE_ROLES.index(pair[0]), pair[1]

    daemons = [_daemon(state_dir, role, inst, now) for role, inst in sorted(found, key=order)]

    queues = read_nfqueue(nfqueue_path)
    data: dict[str, Any] = {
        "time": now,
        "state_dir": state_dir,
        "state_dir_error": dir_error,
        "instance": instance,
        "daemons": daemons,
        "nfqueue": {
            "path": nfqueue_path,
            "present": queues.present,
            "error": queues.error,
            "queues": [asdict(q) for q in queues],
        },
    }

    if installed is not None:
        wanted = found | {(role, instance or "default") for role in stats.STATE_ROLES}
        owners = []
        for role, inst in sorted(wanted, key=order):
            tag = owner_tag(role, inst)
            try:
                items, error = [str(i) for i in installed(tag)], None
            except (NfreplayError, OSError) as exc:
                items, error = [], str(exc)
            owners.append({"owner": tag, "items": items, "error": error})
        data["installed"] = owners
    return data


# --------------------------------------------------------------------------------------------
# Rendering


def _duration(seconds: float) -> str:
    if seconds < 0:
        return "in the future"
    if seconds < 60:
        return f"{seconds:.1f}s"
    s = int(seconds)
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


def _columns(headers: list[str], rows: list[list[str]], left: frozenset[int] = frozenset()) -> list[str]:
    """Aligned columns two spaces apart; numbers right-aligned, columns in ``left`` left-aligned."""
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(headers)]

    def line(cells: list[str]) -> str:
        out = [c.ljust(w) if i in left else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths))]
        return "  ".join(out).rstrip()

    return [line(headers)] + [line(r) for r in rows]


# Counter groups of the table, per role: (group, name prefixes); first match wins, the rest
# go to "other". Extras named like a group ("capture", "channel", "recording") join it.
GROUPS: dict[str, tuple[tuple[str, tuple[str, ...]], ...]] = {
    "online": (
        ("sessions", ("sessions_", "requests_", "responses_", "copies_", "bytes_buffered",
                      "midstream_", "greetings", "unestablished_")),
        ("packets", ("packets_", "client_", "syns_sent", "syn_retransmits", "data_packets_sent",
                     "fins_sent", "acks_sent", "resets_sent", "stale_resets", "retransmits",
                     "fast_retransmits", "window_probes", "resends_withheld", "checksums_fixed",
                     "sack_stripped", "mss_clamped", "send_errors")),
        ("channel", ("records_", "reconnects", "syns_unannounced", "channel",
                     "collision_notices")),
        ("mirror", ("mirror_",)),
        ("capture", ("capture",)),
        ("recording", ("recording",)),
    ),
    "assist": (
        ("kernel queue", ("packets_", "verdict_errors", "nfqueue", "queue")),
        ("records", ("records_", "parked_", "frames_sent", "client_adds", "routes",
                     "announces_", "sessions_collided", "notices_")),
        ("connections", ("connections_", "accept_errors", "peers", "listen")),
        ("recording", ("recording",)),
    ),
    "target": (("routes", ("checks", "routes_", "restore_", "missing")),),
}


def _group(role: str, name: str) -> str:
    for group, prefixes in GROUPS.get(role, ()):
        if name.startswith(prefixes):
            return group
    return "other"


def _daemon_block(d: dict[str, Any], now: float, queues: list[dict[str, Any]] | None = None,
                  show_all: bool = False) -> list[str]:
    head = [f"{d['role']} {d['instance']}", f"pid {d['pid'] if d['pid'] is not None else '-'}", d["state"]]
    if d.get("started") is not None and d["running"]:
        head.append(f"up {_duration(now - d['started'])}")
    if d.get("stats_age") is not None:
        old = " (old)" if d["running"] and d["stats_age"] > STALE_AFTER else ""
        head.append(f"stats {_duration(d['stats_age'])} ago{old}")
    elif d["role"] != "target":
        head.append("no stats")
    lines = ["  ".join(head)]

    if d["state"] == "dead":
        lines.append(f"  stale pid file {d['files']['pid']}: the daemon died without cleaning up")
    if d["files"].get("journal") and not d["running"]:
        down = "nfreplay target down" if d["role"] == "target" else f"nfreplay-{d['role']} down"
        journal = d["files"]["journal"]
        lines.append(f"  journal {journal} records installed rules/routes (`{down}` removes them)")

    levels, rates = set(d.get("levels") or ()), d.get("rates") or {}
    rows: dict[str, list[tuple[str, str, str]]] = {}  # group -> (name, value, rate per second)
    hidden = 0
    for k, v in d["counters"].items():
        if v == 0 and k not in levels and not show_all:
            hidden += 1
            continue
        rate = rates.get(k)
        rows.setdefault(_group(d["role"], k), []).append(
            (k, str(v), f"{rate:.1f}" if isinstance(rate, (int, float)) else ""))
    extra = dict(d["extra"])
    queue = next((q for q in queues or () if q["queue_number"] == extra.get("queue")), None)
    if d["role"] == "assist" and queue is not None and d["running"]:
        extra["nfqueue"] = {"waiting": queue["queue_total"], "q_dropped": queue["queue_dropped"],
                            "u_dropped": queue["user_dropped"]}
    for k, v in _flatten("", extra):
        rows.setdefault(_group(d["role"], k), []).append((k, v, ""))
    if not rows:
        return lines
    every = [r for group in rows.values() for r in group]
    kw = max(len(k) for k, _, _ in every)
    # Numbers right-aligned in their own column; text starts where the numbers start.
    vw = max([len(v) for _, v, _ in every if v.lstrip("-").isdigit()] or [0])
    rw = max([len(r) for _, _, r in every] + [len("/s")])
    order = [g for g, _ in GROUPS.get(d["role"], ())] + ["other"]
    for group in sorted(rows, key=order.index):
        title = f"  {group}"
        if any(r for _, _, r in rows[group]):
            title = f"{title.ljust(kw + 4)}  {'total'.rjust(vw)}  {'/s'.rjust(rw)}"
        lines.append(title)
        for k, v, r in rows[group]:
            value = v.rjust(vw) if v.lstrip("-").isdigit() else v
            lines.append(f"    {k.ljust(kw)}  {value}  {r.rjust(rw)}".rstrip() if r else
                         f"    {k.ljust(kw)}  {value}".rstrip())
    if hidden:
        lines.append(f"  ({hidden} counters at 0 not shown: --all shows them)")
    return lines


def _flatten(prefix: str, value: Any) -> list[tuple[str, str]]:
    """Nested daemon extras as `a.b  value` lines; lists joined, empty ones shown as '-'."""
    if isinstance(value, dict):
        out: list[tuple[str, str]] = []
        for k, v in value.items():
            out += _flatten(f"{prefix}.{k}" if prefix else str(k), v)
        return out if out or not prefix else [(prefix, "-")]
    if isinstance(value, (list, tuple)):
        return [(prefix, ", ".join(str(v) for v in value) or "-")]
    return [(prefix, value if isinstance(value, str) else json.dumps(value))]


def render_table(data: dict[str, Any], show_all: bool = False) -> str:
    """The operator's view: one block per daemon (counters by group, rates per second over
    the last seconds; counters at 0 left out unless ``show_all``), the NFQUEUE table,
    installed rules/routes."""
    now = data.get("time") or time.time()
    out: list[str] = []

    where = f"state dir {data['state_dir']}"
    if data.get("instance"):
        where += f", instance {data['instance']}"
    out.append(f"nfreplay status ({where})")
    if data.get("state_dir_error"):
        out.append(f"  {data['state_dir']}: {data['state_dir_error']}")
    out.append("")
    if not data["daemons"]:
        out += ["no daemons (no state files)", ""]
    for d in data["daemons"]:
        out += _daemon_block(d, now, data["nfqueue"]["queues"], show_all) + [""]

    nfq = data["nfqueue"]
    out.append(f"NFQUEUE ({nfq['path']}, this network namespace)")
    if nfq.get("error"):
        out.append(f"  cannot read: {nfq['error']}")
    elif not nfq["present"]:
        out.append("  not present: nfnetlink_queue is not loaded, no queue is in use")
    elif not nfq["queues"]:
        out.append("  no queue is bound")
    else:
        headers = ["queue", "portid", "waiting", "copy", "range", "q_dropped", "u_dropped", "id_seq"]
        rows = [
            [
                str(q["queue_number"]),
                str(q["peer_portid"]),
                str(q["queue_total"]),
                COPY_MODES.get(q["copy_mode"], str(q["copy_mode"])),
                str(q["copy_range"]),
                str(q["queue_dropped"]),
                str(q["user_dropped"]),
                str(q["id_sequence"]),
            ]
            for q in nfq["queues"]
        ]
        out += _columns(headers, rows, left=frozenset({3}))
        if any(q["queue_dropped"] or q["user_dropped"] for q in nfq["queues"]):
            out.append(
                "  kernel drops: their sessions miss response headers"
                " (q_dropped: queue full; u_dropped: netlink buffer full)"
            )
    out.append("")

    if "installed" in data:
        out.append("Installed rules/routes")
        for owner in data["installed"]:
            if owner["error"]:
                out.append(f"  {owner['owner']}: cannot list: {owner['error']}")
            elif not owner["items"]:
                out.append(f"  {owner['owner']}: none")
            else:
                out.append(f"  {owner['owner']}:")
                out += [f"    {item}" for item in owner["items"]]
        out.append("")

    return "\n".join(out).rstrip("\n") + "\n"


# --------------------------------------------------------------------------------------------
# Verdict

HEALTHY, DEGRADED, BROKEN, NOTHING = 0, 1, 2, 3
"""`nfreplay status` exit codes: all is well; replaying but something is wrong; a daemon is
dead or what it needs is missing; nothing runs or is installed."""


def verdict(data: dict[str, Any]) -> tuple[int, str]:
    """(exit code, one line) for ``collect``'s data: the worst finding wins."""
    broken: list[str] = []
    degraded: list[str] = []
    running = [d for d in data["daemons"] if d["running"]]
    # A target's routes installed by a plain `target up` need no process.
    up = running + [d for d in data["daemons"] if d["state"] == "installed"]
    for d in data["daemons"]:
        name = f"{d['role']} {d['instance']}"
        if d["state"] == "dead":
            broken.append(f"{name} is dead (stale pid file)")
        if not d["running"]:
            continue
        c, extra = d["counters"], d["extra"]
        if d["stats_age"] is not None and d["stats_age"] > STALE_AFTER:
            degraded.append(f"{name} has not published for {d['stats_age']:.0f} s")
        if d["role"] == "target" and c.get("missing"):
            broken.append(f"{name}: {c['missing']} route(s) or rule(s) missing")
        if d["role"] == "online":
            online = cast(stats.OnlineExtra, extra)  # by the names the daemon publishes
            channel: Mapping[str, Any] = online.get("channel") or {}
            if channel.get("up") == 0:
                degraded.append(f"{name}: no control connection is up")
            # Over the last seconds where the daemon says (rates), else since it started.
            rates = d.get("rates") or {}
            if "sessions_opened" in rates:
                window = stats.RATE_WINDOW
                opened = round(rates["sessions_opened"] * window)
                est = round(rates.get("sessions_established", 0) * window)
                when = f" in the last {window:.0f} s"
            else:
                opened, est = c.get("sessions_opened", 0), c.get("sessions_established", 0)
                when = ""
            if opened >= 20 and est * 100 < opened * 80:
                degraded.append(f"{name}: only {est} of {opened} sessions{when} reached the "
                                "target's handshake")
            capture: Mapping[str, Any] = online.get("capture") or {}
            dropped = capture.get("dropped_last_10s", capture.get("dropped"))
            if dropped:
                when = " in the last 10 s" if "dropped_last_10s" in capture else ""
                degraded.append(f"{name}: the capture dropped {dropped} packets{when}")
        if d["role"] == "assist":
            assist = cast(stats.AssistExtra, extra)
            queue = next((q for q in data["nfqueue"]["queues"]
                          if q["queue_number"] == assist.get("queue")), None)
            if data["nfqueue"]["present"] and not data["nfqueue"].get("error") and (
                    queue is None or not queue["peer_portid"]):
                broken.append(f"{name}: its NFQUEUE {assist.get('queue')} is not bound")
            elif queue is not None and assist.get(
                    "queue_dropped_last_10s", queue["queue_dropped"] + queue["user_dropped"]):
                degraded.append(f"{name}: the kernel dropped queued replies")
    for owner in data.get("installed", []):
        missing = [i for i in owner["items"] if i.startswith("MISSING: ")]
        if missing:
            broken.append(f"{owner['owner']}: {missing[0][len('MISSING: '):]} is missing")
        role = owner["owner"].split(":")[1]
        if role == "assist" and not owner["items"] and not owner["error"] and any(
                d["role"] == "assist" and d["owner"] == owner["owner"] for d in running):
            broken.append(f"{owner['owner']}: running but its rules are gone")
    installed = any(o["items"] for o in data.get("installed", []))
    if broken:
        return BROKEN, "BROKEN: " + "; ".join(broken)
    if degraded:
        return DEGRADED, "DEGRADED: " + "; ".join(degraded)
    if not up:
        return NOTHING, "NOTHING RUNNING: " + ("only leftover rules/routes (`down` removes "
                                               "them)" if installed else "no nfreplay daemon")
    return HEALTHY, "HEALTHY: " + ", ".join(f"{d['role']} {d['instance']} {d['state']}"
                                            for d in up)


def render_json(data: dict[str, Any]) -> str:
    """``collect``'s data as JSON: sorted keys, indent 2, trailing newline."""
    return json.dumps(data, indent=2, sort_keys=True) + "\n"
