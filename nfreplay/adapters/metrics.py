"""The HTTP endpoint Prometheus scrapes (``--metrics-listen``), on prometheus_client.

It serves ``/metrics`` from a thread of its own, one request at a time (5 s at most per
connection), built at each scrape from the stats document the daemon last published
(``StatsFile.last``): the hot loop never waits for a scrape and does no work for it. There is
no authentication: bind it to an address only the monitoring reaches. Off unless configured.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import asdict
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from nfreplay.errors import HostError

log = logging.getLogger("nfreplay.metrics")

__all__ = ["MetricsServer"]


class MetricsServer:
    """Serves the metrics of ``latest()`` (a stats document, or None) at
    ``http://ip:port/metrics``; ``nfqueue``: with the kernel's NFQUEUE rows (the assist).
    The address is bound here (HostError if it cannot be, ``key`` naming the setting), the
    serving thread starts with ``start()`` (after ``--daemon`` forks: threads do not survive
    a fork). ``close()`` stops it."""

    def __init__(self, ip: str, port: int, latest: Callable[[], Mapping[str, Any] | None],
                 key: str, nfqueue: bool = False) -> None:
        from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

        from prometheus_client import make_wsgi_app
        from prometheus_client.registry import CollectorRegistry

        from nfreplay import __version__, metrics, status

        class Collector:
            def collect(self) -> Iterator[Any]:
                queues = [asdict(q) for q in status.read_nfqueue()] if nfqueue else []
                return metrics.families(latest(), __version__, queues)

        class Quiet(WSGIRequestHandler):
            timeout = 5  # seconds a connection may idle or dribble before it is closed

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass  # one line per scrape would flood the daemon's log

        registry = CollectorRegistry(auto_describe=False)
        registry.register(Collector())  # type: ignore[arg-type]
        try:
            # One request at a time, on one thread: a peer flooding the endpoint gets a
            # queue, never a thread per connection competing with the replay for the GIL.
            self._server = make_server(ip, port, make_wsgi_app(registry), WSGIServer,
                                       handler_class=Quiet)
        except OSError as exc:
            raise HostError(f"{key} {ip}:{port}: {exc.strerror or exc}") from None
        self.address = f"{ip}:{self._server.server_port}"
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._server.serve_forever, name="metrics",
                                        daemon=True)
        self._thread.start()
        log.info("metrics: http://%s/metrics", self.address)

    def close(self) -> None:
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(timeout=5)
        self._server.server_close()
