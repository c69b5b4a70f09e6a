"""nfreplay-online's run around its engine: the wait for a control connection, the loop, the
looks for trouble, the stats published once a second, an offline replay's end, the recording's
housekeeping, and the teardown. The CLI builds the adapters and hands them over; this module
decides nothing about where packets come from or go.

One `OnlineRun` is one worker (or the whole instance with one worker): `run` returns when
`stop` says so or an offline replay is over, with every live session reset on the target.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, Protocol

from nfreplay.engine.online import CaptureSource, OnlineEngine
from nfreplay.stats import OnlineExtra
from nfreplay.engine.watch import CHECK_EVERY, DropWatch, HandshakeWatch
from nfreplay.session.counters import Counters

log = logging.getLogger("nfreplay.online")

Report = Callable[[Counters, OnlineExtra], None]


class Source(Protocol):
    """What the run needs of the engine's packet source besides the engine's contract."""

    def stats(self) -> tuple[int, int, int]: ...

    def close(self) -> None: ...


class Delivery(Protocol):
    """What the run needs of the sender besides `send` (adapters.rawsock)."""

    errors: dict[str, int]

    def refresh(self) -> None: ...

    def stats(self) -> dict[str, object]: ...

    def close(self) -> None: ...


class Offline(Protocol):
    """A capture file played on its own clock (adapters.pcapsource.FileSource)."""

    waiting_for_drain: bool
    exhausted: bool

    def drained(self) -> None: ...


class Progress(Protocol):
    """An offline replay's progress display (the CLI's)."""

    def show(self) -> None: ...

    def summary(self, elapsed: float) -> None: ...


class Stop(Protocol):
    requested: bool


class Recording(Protocol):
    """The response recording's side of a run (OnlineRecording)."""

    def tick(self) -> None: ...

    def stats(self) -> dict[str, Any]: ...

    def close(self) -> None: ...


class OnlineRun:
    """`engine` with its `source` and `sender`; `capture` (interface, filter) and the
    assistants' names go into the stats as they are; `offline` is the source when it is a
    capture file."""

    def __init__(self, engine: OnlineEngine, source: CaptureSource, sender: Delivery, *,
                 capture: dict[str, str], offline: Offline | None = None,
                 recording: Recording | None = None, progress: Progress | None = None,
                 reconnect_interval: float = 2.0) -> None:
        self.engine, self.source, self.sender = engine, source, sender
        self.capture, self.offline = capture, offline
        self.recording, self.progress = recording, progress
        self.reconnect_interval = reconnect_interval
        self.assistants = [a.name for a in engine.assistants]
        self.capture_drops = DropWatch(
            "the capture", "nfreplay-online fell behind the traffic, their sessions lose data "
            "(sessions_capture_gap): replay a share (--percent), add --workers, or keep other "
            "work off this core")
        self.handshakes = HandshakeWatch()

    def _stats(self) -> Source:
        return self.source  # type: ignore[return-value]  # every source has stats and close

    def connect(self, stop: Stop) -> None:
        """Open the control connections, waiting up to a second for one (sessions start only
        once one is up); say so if none is."""
        engine = self.engine
        engine.connect(engine.clock())
        deadline = engine.clock() + 1.0
        while not engine.channel_up and engine.clock() < deadline and not stop.requested:
            engine.step(0.05)
        if not engine.channel_up:
            log.warning("no assistant reachable yet (%s); retrying every %.0f s — sessions "
                        "start once one answers", ", ".join(self.assistants),
                        self.reconnect_interval)

    def run(self, stop: Stop, report: Report) -> None:
        """The loop, until `stop` (or an offline replay's end); `report(counters, extra)`
        about once a second and once more at the end. Tears down whatever happens."""
        engine, source = self.engine, self._stats()
        started = engine.clock()
        next_publish = 0.0
        next_check = engine.now + CHECK_EVERY
        warned_checksums = False
        last_extra = None
        try:
            while not stop.requested:
                if self.offline is not None and not engine.channel_up \
                        and engine.now - started < 10:
                    engine.step(0.1)  # a file waits for its assistant; live traffic cannot
                    continue
                engine.step(engine.next_timeout())
                if self.offline is not None and self._offline_done():
                    break
                if engine.now >= next_check:
                    next_check = engine.now + CHECK_EVERY
                    self.handshakes.check(engine.c)
                    self.capture_drops.check(source.stats()[1], CHECK_EVERY)
                if not warned_checksums and engine.c.checksums_fixed:
                    warned_checksums = True
                    log.warning("captured packets carry unfinished TCP checksums (TX checksum "
                                "offload on a sender that shares this host or hypervisor: "
                                "veth, containers, VMs); nfreplay computes them in full for "
                                "those sessions (checksums_fixed), which costs CPU: `ethtool "
                                "-K IFACE tx off` on the sending side avoids it")
                if engine.now >= next_publish:
                    next_publish = engine.now + 1.0
                    self.sender.refresh()  # routes and neighbours change
                    last_extra = self.extra()
                    report(engine.c, last_extra)
                    if self.progress is not None:
                        self.progress.show()
        finally:
            try:
                engine.shutdown()
            finally:
                source.close()
                self.sender.close()
                if self.recording is not None:
                    self.recording.close()
        if last_extra is not None:
            report(engine.c, last_extra)  # the counters as they end
        if self.progress is not None:
            self.progress.summary(engine.clock() - started)

    def extra(self) -> OnlineExtra:
        """What the stats file says besides the counters (nfreplay status, metrics)."""
        engine = self.engine
        received, dropped, ifdropped = self._stats().stats()
        extra: OnlineExtra = {
            "capture": {"interface": self.capture["interface"],
                        "filter": self.capture["filter"], "received": received,
                        "dropped": dropped, "ifdropped": ifdropped,
                        "dropped_last_10s": self.capture_drops.recent},
            "channel": {"up": engine.channel_up, "drops": engine.channel_drops,
                        "announces_failed": engine.announces_failed,
                        "assistants": self.assistants},
            "send_errors": self.sender.errors,
            "inject": self.sender.stats(),
            "sessions_in_table": len(engine.table),
        }
        if self.recording is not None:
            try:
                self.recording.tick()
            except Exception:
                engine._internal_error("the recording's housekeeping")
            extra["recording"] = self.recording.stats()
        chosen = engine.table.sel
        if chosen.allocator is not None:
            extra["client_pairs_in_use"] = chosen.allocator.in_use()
        if chosen.client_filter is not None:
            extra["toa_options_seen"] = chosen.toa_seen
        return extra

    def _offline_done(self) -> bool:
        """After a wake-up of an offline replay: start the next loop once the sessions of the
        previous one are over; True when the whole replay is done: the file was played and no
        session has anything left to send or to wait for (a session the capture cut before
        its FIN is then reset by the shutdown), or a tail of session_timeout passed."""
        engine, source = self.engine, self.offline
        assert source is not None
        live = engine.c.sessions_live
        if source.waiting_for_drain and live == 0:
            source.drained()
        if not source.exhausted:
            return False
        if engine.tail_since is None:
            engine.tail_since = engine.now
        return (live == 0 or engine.table.quiescent(engine.now)
                or engine.now - engine.tail_since > engine.p.session_timeout)


class OnlineRecording:
    """The response recording of a run (`--record-responses`): its directory, the recorder
    the engine feeds and the recorder's own capture (both directions)."""

    def __init__(self, directory: Any, recorder: Any, capture: Any) -> None:
        self.directory, self.recorder, self.capture = directory, recorder, capture

    def tick(self) -> None:
        self.recorder.tick(time.time())

    def stats(self) -> dict[str, Any]:
        r = self.recorder
        return {**self.directory.stats(), "sessions": r.sessions,
                "capture": dict(zip(("received", "dropped", "ifdropped"), self.capture.stats())),
                "not_sampled": r.not_sampled, "held_dropped": r.held_dropped}

    def close(self) -> None:
        """Write the recording's last packets and lines, then close it; each step on its
        own."""
        from nfreplay.engine.recorder import HOLD_SECONDS

        try:
            # The capture hands over a ring block when it is full or 10 ms old: wait for the
            # last one, so that the recording ends with the replay.
            time.sleep(0.02)
            self.capture.dispatch_ts(self.recorder.packet)
            self.recorder.tick(time.time() + HOLD_SECONDS)  # lines still waiting are written
        except Exception as exc:  # a bug: the files written so far stay good
            log.warning("recording: the last packets were not written: %s", exc)
        finally:
            self.capture.close()
            self.directory.close()
