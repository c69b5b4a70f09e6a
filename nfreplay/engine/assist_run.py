"""nfreplay-assist's run around its engine: the loop, the look at the kernel's queue for
drops, and the stats published once a second. The CLI sets up the queue, the rules and the
listener, and tears them down in the order they need (the rule before the queue)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from nfreplay.engine.assist import AssistCounters, AssistEngine
from nfreplay.engine.watch import CHECK_EVERY, DropWatch
from nfreplay.stats import AssistExtra

Report = Callable[[AssistCounters, AssistExtra], None]


class Queue(Protocol):
    @property
    def errors(self) -> int: ...


class Stop(Protocol):
    requested: bool


class Recording(Protocol):
    """The recording of the target's replies (its directory and the recording callback)."""

    def stats(self) -> dict[str, Any]: ...


class AssistRun:
    """`engine` serving NFQUEUE `queue_number` (`queue`), reporting about once a second."""

    def __init__(self, engine: AssistEngine, queue: Queue, queue_number: int, listen: str,
                 recording: Recording | None = None,
                 read_queues: Callable[[], list[Any]] | None = None) -> None:
        from nfreplay.status import read_nfqueue

        self.engine, self.queue, self.number, self.listen = engine, queue, queue_number, listen
        self.recording = recording
        self.read_queues = read_queues or read_nfqueue
        self.queue_drops = DropWatch(
            f"the kernel's NFQUEUE {queue_number}",
            "their sessions miss records and stall (q_dropped: the queue was full, "
            "u_dropped: the netlink buffer; nfreplay status shows which): this loop "
            "falls behind the target's replies; keep other work off this core")

    def run(self, stop: Stop, report: Report) -> None:
        engine = self.engine
        next_publish = 0.0
        next_check = engine.now + CHECK_EVERY
        while not stop.requested:
            engine.step(0.2)
            if engine.now >= next_check:
                next_check = engine.now + CHECK_EVERY
                row = next((q for q in self.read_queues() if q.queue_number == self.number),
                           None)
                if row is not None:
                    self.queue_drops.check(row.queue_dropped + row.user_dropped, CHECK_EVERY)
            if engine.now >= next_publish:
                next_publish = engine.now + 1.0
                report(engine.c, self.extra())

    def extra(self) -> AssistExtra:
        """What the stats file says besides the counters (nfreplay status, metrics)."""
        self.engine.c.verdict_errors = self.queue.errors
        extra: AssistExtra = {"queue": self.number, "listen": self.listen,
                                 "peers": [c.peer for c in self.engine.conns],
                                 "queue_dropped_last_10s": self.queue_drops.recent}
        if self.recording is not None:
            extra["recording"] = self.recording.stats()
        return extra
