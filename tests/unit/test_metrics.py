"""Prometheus metrics from stats documents (pure), and the endpoint on loopback."""

from __future__ import annotations

import pathlib
import urllib.request
from typing import Any

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import CollectorRegistry

from nfreplay import metrics, stats
from nfreplay.adapters.metrics import MetricsServer
from nfreplay.engine.assist import AssistCounters
from nfreplay.errors import HostError
from nfreplay.session.counters import Counters
from nfreplay.session.machine import REASONS


def exposition(document: dict[str, Any] | None, queues: list[dict[str, Any]] = []) -> str:
    class C:
        def collect(self) -> Any:
            return metrics.families(document, "9.9", queues)

    registry = CollectorRegistry(auto_describe=False)
    registry.register(C())  # type: ignore[arg-type]
    return generate_latest(registry).decode()


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for f in text_string_to_metric_families(text) for s in f.samples}


def written(tmp_path: pathlib.Path, role: str, counters: Any, extra: dict[str, Any]
            ) -> dict[str, Any]:
    sf = stats.StatsFile(str(tmp_path / f"{role}-m.stats.json"), levels=type(counters).levels)
    sf.write(counters.snapshot(), extra)
    assert sf.last is not None
    return sf.last


def test_reasons_are_the_session_machines() -> None:
    assert metrics.SESSION_END_REASONS == REASONS
    assert all(f"sessions_{r}" in Counters.names for r in REASONS)


def test_online_counters_levels_reasons_capture_channel(tmp_path: pathlib.Path) -> None:
    c = Counters()
    c.packets_sent, c.sessions_opened, c.sessions_live, c.bytes_buffered = 500, 100, 7, 4096
    c.sessions_completed, c.sessions_handshake_failed = 90, 3
    doc = written(tmp_path, "online", c, {
        "capture": {"interface": "eth0", "received": 800, "dropped": 2, "ifdropped": 0},
        "channel": {"up": 1, "drops": 4, "announces_failed": 0, "assistants": ["a:36524"]},
        "send_errors": {"EPERM": 5}, "sessions_in_table": 9,
        "inject": {"mode": "link", "through_kernel": 12,
                   "paths": {"198.18.0.3": "link eth0 to 02:00:00:00:00:03"}},
        "process": {"cpu_user_s": 1.5, "cpu_sys_s": 0.5, "max_rss_kib": 1000},
        "compiled": True})
    got = samples(exposition(doc))
    assert got[("nfreplay_online_packets_sent_total", ())] == 500
    assert got[("nfreplay_online_sessions_opened_total", ())] == 100
    # levels are gauges, in base units
    assert got[("nfreplay_online_sessions_live", ())] == 7
    assert got[("nfreplay_online_buffered_bytes", ())] == 4096
    assert ("nfreplay_online_sessions_live_total", ()) not in got
    # every reason a session ends is one label value of one counter
    assert got[("nfreplay_online_sessions_ended_total", (("reason", "completed"),))] == 90
    assert got[("nfreplay_online_sessions_ended_total", (("reason", "handshake_failed"),))] == 3
    assert len([k for k in got if k[0] == "nfreplay_online_sessions_ended_total"]) == len(REASONS)
    assert ("nfreplay_online_sessions_completed_total", ()) not in got
    assert got[("nfreplay_online_capture_dropped_packets_total", ())] == 2
    assert got[("nfreplay_online_capture_received_packets_total", ())] == 800
    assert got[("nfreplay_online_channel_connections_up", ())] == 1
    assert got[("nfreplay_online_channel_drops_total", ())] == 4
    assert got[("nfreplay_online_send_errors_total", (("error", "EPERM"),))] == 5
    assert got[("nfreplay_online_injected_through_kernel_packets_total", ())] == 12
    assert got[("nfreplay_online_cpu_seconds_total", (("mode", "user"),))] == 1.5
    assert got[("nfreplay_online_max_rss_bytes", ())] == 1024000
    assert got[("nfreplay_online_info", (("compiled", "yes"), ("nfreplay_instance", "m"),
                                         ("version", "9.9")))] == 1
    # no label may be called "instance": Prometheus owns it
    assert not any(label == "instance" for _, labels in got for label, _ in labels)


def test_assist_queue_rows(tmp_path: pathlib.Path) -> None:
    c = AssistCounters()
    c.packets_queued, c.routes, c.connections_live = 1000, 12, 2
    doc = written(tmp_path, "assist", c, {"queue": 3})
    row = {"queue_number": 3, "peer_portid": 77, "queue_total": 5, "copy_mode": 2,
           "copy_range": 80, "queue_dropped": 11, "user_dropped": 13, "id_sequence": 1000}
    got = samples(exposition(doc, [row]))
    assert got[("nfreplay_assist_packets_queued_total", ())] == 1000
    assert got[("nfreplay_assist_routes", ())] == 12
    assert got[("nfreplay_assist_connections", ())] == 2
    assert got[("nfreplay_assist_nfqueue_bound", (("queue", "3"),))] == 1
    assert got[("nfreplay_assist_nfqueue_waiting", (("queue", "3"),))] == 5
    assert got[("nfreplay_assist_nfqueue_dropped_packets_total",
                (("queue", "3"), ("reason", "queue_full")))] == 11
    assert got[("nfreplay_assist_nfqueue_dropped_packets_total",
                (("queue", "3"), ("reason", "netlink")))] == 13
    unbound = samples(exposition(doc, []))
    assert unbound[("nfreplay_assist_nfqueue_bound", (("queue", "3"),))] == 0
    assert ("nfreplay_assist_nfqueue_waiting", (("queue", "3"),)) not in unbound


def test_nothing_published_yet_and_odd_values() -> None:
    assert samples(exposition(None)) == {}
    odd = {"role": "online", "instance": "x", "counters": {"a": True, "b": 2},
           "extra": {"capture": "not a dict", "process": None, "channel": {"up": "yes"}}}
    got = samples(exposition(odd))  # what is not a number is left out, the rest served
    assert got[("nfreplay_online_b_total", ())] == 2 and ("nfreplay_online_a_total", ()) not in got
    assert not any(name.startswith(("nfreplay_online_capture", "nfreplay_online_channel"))
                   for name, _ in got)


def test_endpoint_serves_the_latest_document_and_refuses_a_taken_port() -> None:
    latest: list[dict[str, Any] | None] = [None]
    server = MetricsServer("127.0.0.1", 0, lambda: latest[0], "online.metrics_listen")
    server.start()
    try:
        url = f"http://{server.address}/metrics"
        with urllib.request.urlopen(url, timeout=10) as r:
            assert r.status == 200 and "nfreplay_" not in r.read().decode()
        latest[0] = {"role": "online", "instance": "e", "counters": {"packets_sent": 42},
                     "extra": {}}
        with urllib.request.urlopen(url, timeout=10) as r:
            got = samples(r.read().decode())
        assert got[("nfreplay_online_packets_sent_total", ())] == 42
        port = int(server.address.rsplit(":", 1)[1])
        with pytest.raises(HostError, match=r"^online.metrics_listen 127.0.0.1:\d+: "):
            MetricsServer("127.0.0.1", port, lambda: None, "online.metrics_listen")
    finally:
        server.close()


def test_the_grafana_dashboard_asks_only_for_metrics_the_daemons_serve(
        tmp_path: pathlib.Path) -> None:
    import json
    import re

    online = written(tmp_path, "online", Counters(), {
        "capture": {"received": 0, "dropped": 0, "ifdropped": 0},
        "channel": {"up": 0, "drops": 0, "announces_failed": 0, "assistants": []},
        "send_errors": {"EPERM": 0}, "sessions_in_table": 0,
        "process": {"cpu_user_s": 0, "cpu_sys_s": 0, "max_rss_kib": 0}})
    assist = written(tmp_path, "assist", AssistCounters(), {
        "queue": 0, "process": {"cpu_user_s": 0, "cpu_sys_s": 0, "max_rss_kib": 0}})
    row = {"queue_number": 0, "peer_portid": 1, "queue_total": 0, "queue_dropped": 0,
           "user_dropped": 0}
    served = {name for name, _ in samples(exposition(online))} | \
        {name for name, _ in samples(exposition(assist, [row]))}
    dashboard = json.loads((pathlib.Path(__file__).parents[2] / "etc" /
                            "grafana-dashboard.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    asked = {name for e in exprs for name in re.findall(r"\bnfreplay_\w+", e)}
    assert len(asked) >= 20 and asked <= served, sorted(asked - served)


def test_sessions_collided_is_a_metric_of_its_own_name_on_both_daemons(
        tmp_path: pathlib.Path) -> None:
    """Fan-in collisions (issue 22): `sessions_collided` under that name on both daemons; on
    the online side also the reason `collided` of sessions_ended."""
    c = Counters()
    c.sessions_collided, c.unestablished_collided, c.sessions_moved = 4, 4, 9
    got = samples(exposition(written(tmp_path, "online", c, {})))
    assert got[("nfreplay_online_sessions_collided_total", ())] == 4
    assert got[("nfreplay_online_sessions_ended_total", (("reason", "collided"),))] == 4
    assert got[("nfreplay_online_unestablished_collided_total", ())] == 4
    assert got[("nfreplay_online_sessions_moved_total", ())] == 9
    a = AssistCounters()
    a.sessions_collided, a.announces_collided = 2, 5
    got = samples(exposition(written(tmp_path, "assist", a, {})))
    assert got[("nfreplay_assist_sessions_collided_total", ())] == 2
    assert got[("nfreplay_assist_announces_collided_total", ())] == 5
