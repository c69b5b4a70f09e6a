"""Prometheus metrics from a daemon's stats document (what ``StatsFile`` last wrote).

Invariants:
  * Pure: ``families(document, queues)`` turns one stats document (and, for the assist, the
    kernel's NFQUEUE rows) into metric families; serving them is ``adapters.metrics``.
  * Metrics show exactly what the stats file shows, so ``/metrics`` and ``nfreplay status
    --json`` agree: same snapshot, same numbers (the workers' sums, for several workers).
  * Names follow Prometheus conventions: ``nfreplay_<role>_<counter>_total`` for running
    totals, plain ``nfreplay_<role>_<name>`` gauges for the levels (``Counters.levels``), base
    units in the name (``_bytes``, ``_seconds``), and the reason a session ended as the label
    ``reason`` of ``nfreplay_online_sessions_ended_total``.
  * No label is named ``instance`` (Prometheus sets that one to the scraped address): the
    nfreplay instance is ``nfreplay_instance`` on ``nfreplay_<role>_info``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any, cast

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from nfreplay import stats

__all__ = ["families", "SESSION_END_REASONS"]

# Every reason a session ends (``session.machine.REASONS``); a copy, so that the metrics
# module does not import the session machine. A unit test holds the two equal.
SESSION_END_REASONS = ("completed", "client_reset", "target_reset", "handshake_failed",
                       "timed_out", "superseded", "capture_gap", "overflow", "shutdown",
                       "filtered", "collided")
# End reasons that also have a counter of their own name (the issue that added them says so).
_OWN_NAME = frozenset({"sessions_collided"})

# Levels whose counter name does not read as a metric name.
_GAUGE_NAMES = {"bytes_buffered": "buffered_bytes", "connections_live": "connections",
                "missing": "routes_missing"}


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def _dict(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def families(document: Mapping[str, Any] | None, version: str,
             queues: Sequence[Mapping[str, Any]] = ()) -> Iterator[Metric]:
    """The metric families of one stats document (None: only the info metric is known yet).
    ``queues`` are the kernel's NFQUEUE rows (``status.read_nfqueue``), used by the assist."""
    if document is None:
        return
    role = str(document.get("role", "unknown"))
    prefix = f"nfreplay_{role}"
    extra = _dict(document.get("extra"))
    info = GaugeMetricFamily(f"{prefix}_info", f"nfreplay-{role}: instance, version, build",
                             labels=["nfreplay_instance", "version", "compiled"])
    info.add_metric([str(document.get("instance", "")), version,
                     "yes" if extra.get("compiled") else "no"], 1.0)
    yield info
    started = _number(document.get("started"))
    if started is not None:
        yield GaugeMetricFamily(f"{prefix}_start_time_seconds",
                                "when the daemon started (seconds since the epoch)", started)
    published = _number(document.get("time"))
    if published is not None:
        yield GaugeMetricFamily(f"{prefix}_stats_time_seconds",
                                "when these numbers were taken (about once a second)",
                                published)

    counters = _dict(document.get("counters"))
    levels = set(document.get("levels") or ())
    ended = CounterMetricFamily(f"{prefix}_sessions_ended", "sessions ended, by reason",
                                labels=["reason"])
    for name, value in counters.items():
        number = _number(value)
        if number is None:
            continue
        if role == "online" and name.startswith("sessions_") and \
                name[len("sessions_"):] in SESSION_END_REASONS:
            ended.add_metric([name[len("sessions_"):]], number)
            if name in _OWN_NAME:
                yield CounterMetricFamily(f"{prefix}_{name}", f"{name} (nfreplay status shows "
                                          "it)", number)
        elif name in levels:
            gauge = _GAUGE_NAMES.get(name, name)
            yield GaugeMetricFamily(f"{prefix}_{gauge}", f"{name} (a level)", number)
        else:
            yield CounterMetricFamily(f"{prefix}_{name}", f"{name} (nfreplay status shows it)",
                                      number)
    if ended.samples:
        yield ended

    # Read by the names the daemons publish them under (stats.OnlineExtra, AssistExtra),
    # each value still checked: the document is JSON another version may have written.
    yield from _process(prefix, cast(stats.OnlineExtra, extra))
    if role == "online":
        yield from _online(prefix, cast(stats.OnlineExtra, extra))
    elif role == "assist":
        yield from _assist(prefix, cast(stats.AssistExtra, extra), queues)


def _process(prefix: str, extra: stats.OnlineExtra) -> Iterator[Metric]:
    process = _dict(extra.get("process"))
    workers = extra.get("workers")
    n = len(workers) if isinstance(workers, list) and workers else 1
    yield GaugeMetricFamily(f"{prefix}_workers", "replay processes (1 without --workers)", n)
    cpu = CounterMetricFamily(f"{prefix}_cpu_seconds", "CPU time of every replay process",
                              labels=["mode"])
    for mode, key in (("user", "cpu_user_s"), ("system", "cpu_sys_s")):
        number = _number(process.get(key))
        if number is not None:
            cpu.add_metric([mode], number)
    if cpu.samples:
        yield cpu
    rss = _number(process.get("max_rss_kib"))
    if rss is not None:
        yield GaugeMetricFamily(f"{prefix}_max_rss_bytes",
                                "peak resident memory (summed over the workers)", rss * 1024)


def _online(prefix: str, extra: stats.OnlineExtra) -> Iterator[Metric]:
    capture = _dict(extra.get("capture"))
    for key, name, text in (
            ("received", "capture_received_packets", "packets the capture received (libpcap)"),
            ("dropped", "capture_dropped_packets",
             "packets the kernel dropped because the capture did not read them in time"),
            ("ifdropped", "capture_interface_dropped_packets",
             "packets the interface dropped (driver)")):
        number = _number(capture.get(key))
        if number is not None:
            yield CounterMetricFamily(f"{prefix}_{name}", text, number)
    channel = _dict(extra.get("channel"))
    up = _number(channel.get("up"))
    if up is not None:
        yield GaugeMetricFamily(f"{prefix}_channel_connections_up",
                                "control connections to assistants that are up", up)
        assistants = channel.get("assistants") or ()
        yield GaugeMetricFamily(f"{prefix}_channel_assistants", "assistants configured",
                                len(assistants) if isinstance(assistants, list) else 0)
    for key, name, text in (
            ("drops", "channel_drops", "control connections lost"),
            ("announces_failed", "channel_announces_failed",
             "session announcements no assistant could take")):
        number = _number(channel.get(key))
        if number is not None:
            yield CounterMetricFamily(f"{prefix}_{name}", text, number)
    errors = extra.get("send_errors")
    if isinstance(errors, Mapping):
        family = CounterMetricFamily(f"{prefix}_send_errors", "packet sends that failed",
                                     labels=["error"])
        for error, count in errors.items():
            number = _number(count)
            if number is not None:
                family.add_metric([str(error)], number)
        yield family
    through_kernel = _number(_dict(extra.get("inject")).get("through_kernel"))
    if through_kernel is not None:
        yield CounterMetricFamily(f"{prefix}_injected_through_kernel_packets",
                                  "packets --inject link left to the kernel's IP output (no "
                                  "usable link-layer path yet)", through_kernel)
    table = _number(extra.get("sessions_in_table"))
    if table is not None:
        yield GaugeMetricFamily(f"{prefix}_sessions_in_table",
                                "sessions in memory (live, and ended but kept a while)", table)


def _assist(prefix: str, extra: stats.AssistExtra,
            queues: Sequence[Mapping[str, Any]]) -> Iterator[Metric]:
    number = extra.get("queue")
    if not isinstance(number, int):
        return
    row = next((q for q in queues if q.get("queue_number") == number), None)
    label = [str(number)]
    bound = GaugeMetricFamily(f"{prefix}_nfqueue_bound",
                              "1 while a process is bound to the queue (the kernel's view)",
                              labels=["queue"])
    bound.add_metric(label, 1.0 if row is not None and row.get("peer_portid") else 0.0)
    yield bound
    if row is None:
        return
    waiting = GaugeMetricFamily(f"{prefix}_nfqueue_waiting",
                                "replies in the kernel queue waiting for a verdict",
                                labels=["queue"])
    waiting.add_metric(label, float(row.get("queue_total", 0)))
    yield waiting
    dropped = CounterMetricFamily(
        f"{prefix}_nfqueue_dropped_packets",
        "replies the kernel dropped: queue_full (the queue was full), netlink (the socket "
        "buffer was full); their sessions miss records", labels=["queue", "reason"])
    dropped.add_metric(label + ["queue_full"], float(row.get("queue_dropped", 0)))
    dropped.add_metric(label + ["netlink"], float(row.get("user_dropped", 0)))
    yield dropped
