"""What a running daemon tells operators: its stats file (status), the metrics endpoint and
the periodic stats line (the warnings are the engine's: engine.watch)."""

from __future__ import annotations

import contextlib
import logging
import resource
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from nfreplay import stats

log = logging.getLogger("nfreplay")

def add_stats_interval(parser: Any, default: float) -> None:
    parser.add_argument("--stats-interval", metavar="SECONDS",
                        help="log a one-line summary of the counters (with rates) this often, "
                             f"and once at stop; 0 = never (default {default:g})")


def add_metrics_listen(parser: Any) -> None:
    parser.add_argument("--metrics-listen", metavar="[ADDR:]PORT",
                        help="serve Prometheus metrics at http://ADDR:PORT/metrics (a bare "
                             "PORT listens on 127.0.0.1 only; default: no metrics)")


def bind_metrics(ip: str, port: int | None, key: str, stats_file: stats.StatsFile,
                 nfqueue: bool = False) -> Any:
    """The metrics endpoint of `key` (`<role>.metrics_listen`), bound but not yet serving, or
    None when it is off. Bound before `--daemon` detaches, so a taken port is refused in the
    operator's terminal (exit 3); `serving` starts it in the detached process."""
    if port is None:
        return None
    from nfreplay.adapters.metrics import MetricsServer

    return MetricsServer(ip, port, lambda: stats_file.last, key, nfqueue=nfqueue)


@contextlib.contextmanager
def serving(server: Any) -> Iterator[None]:
    """`bind_metrics`'s endpoint serving while the body runs (nothing for None)."""
    if server is None:
        yield
        return
    server.start()
    try:
        yield
    finally:
        server.close()


def process_usage() -> dict[str, float]:
    """CPU seconds and peak memory of this process (tcpcopy logs the same every 60 s)."""
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return {"cpu_user_s": round(ru.ru_utime, 2), "cpu_sys_s": round(ru.ru_stime, 2),
            "max_rss_kib": ru.ru_maxrss}


def compiled() -> bool:
    """Whether the per-packet modules run compiled (mypyc, see setup.py) or as Python."""
    from nfreplay.session import machine

    return not machine.__file__.endswith(".py")


def publish(stats_file: stats.StatsFile, counters: Any, extra: Mapping[str, object]) -> None:
    extra = {**extra, "process": process_usage(), "compiled": compiled()}
    try:
        stats_file.write(counters.snapshot(), extra)
    except OSError as exc:  # a full /run must not kill the replay
        log.warning("stats: %s", exc)

class StatsLine:
    """One log line with chosen counters every `interval` seconds (tcpcopy logs its counters
    every 30 s), with per-second rates since the previous line, and a last one at stop with
    rates over the whole run. `fields`: (label, counter, rate?) - levels (live sessions)
    have no rate. Fed the counters' snapshot about once a second; `interval` 0: no lines."""

    def __init__(self, fields: Sequence[tuple[str, str, bool]], interval: float,
                 now: float) -> None:
        self.fields = fields
        self.interval = interval
        self.started = self.since = now
        self.prev: Mapping[str, int] = {}  # at the previous line (nothing: all counters 0)
        self.last: Mapping[str, int] = {}

    def _line(self, now: float, since: float, base: Mapping[str, int]) -> str:
        span = max(now - since, 1e-9)
        parts = []
        for label, key, rate in self.fields:
            value = self.last.get(key, 0)
            if rate:
                parts.append(f"{label} {value} ({(value - base.get(key, 0)) / span:.1f}/s)")
            else:
                parts.append(f"{label} {value}")
        return ", ".join(parts)

    def feed(self, snapshot: Mapping[str, int], now: float) -> None:
        self.last = snapshot
        if self.interval and now - self.since >= self.interval:
            log.info("stats (last %.0f s): %s", now - self.since,
                     self._line(now, self.since, self.prev))
            self.since, self.prev = now, snapshot

    def final(self, now: float) -> None:
        if self.last:
            log.info("stats at stop (over %.0f s): %s", now - self.started,
                     self._line(now, self.started, {}))
