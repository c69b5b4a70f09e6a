"""Offline replay: the client→service packets of a capture file, released on the capture's own
clock (scaled by `speed`, idle gaps longer than `max_gap` compressed), `loops` times over.

It stands in for the live `Capture`: `dispatch(callback)` hands over every frame that is due
now, as (IPv4 bytes, 0); `wait(now)` says how long until the next one. The session engine and
the assistant do not know the difference.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from nfreplay.errors import ConfigError, WireError
from nfreplay.proto import tcpip
from nfreplay.proto.pcapfile import CaptureFile, Frame, open_capture

# Frames handed over per wake-up at most, so that records and timers are not starved when a
# fast replay falls behind.
BATCH = 2000



def _open(path: str) -> CaptureFile:
    """The capture file the operator named; one ConfigError line if it cannot be opened."""
    try:
        return open_capture(path)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot open capture file: {exc.strerror or exc}") from None

class FileSource:
    """Frames of `path` sent to one of `services`: (service ip or None for any, port)."""

    def __init__(self, path: str, services: list[tuple[int | None, int]], *,
                 speed: float = 1.0, max_gap: float = 0.0, loops: int = 1,
                 clock: Callable[[], float]) -> None:
        self.path = path
        self.ports = {port for _, port in services}
        self.services = services
        self.speed = speed
        self.max_gap = max_gap / 1000.0
        self.loops = loops
        self.clock = clock
        self.loop = 0
        self.read = 0  # frames read from the file(s)
        self.matched = 0  # client→service packets handed over
        self.errors: dict[str, int] = {}
        self.skipped: dict[str, int] = {}
        self.gaps_capped = 0  # pauses longer than max_gap (or a corrupt timestamp), shortened
        self.total, self.duration = self._survey()
        self._file: CaptureFile | None = None
        self._frames: Iterator[Frame] = iter(())
        self._next: Frame | None = None
        self._next_due = 0.0
        self._start = 0.0  # wall time the current loop started
        self._first = 0.0  # capture time of the loop's first frame
        self._prev = 0.0
        self._skipped_time = 0.0
        self.exhausted = False
        self.waiting_for_drain = False

    def _survey(self) -> tuple[int, float]:
        """Matching packets and the capture's span: for progress and the time left. A quick
        first pass (the reader does ~1M frames/s) that also reports a bad file up front."""
        count, first, last = 0, None, 0.0
        with _open(self.path) as f:
            for frame in f:
                if self._wanted(frame.ip):
                    count += 1
                    if first is None:
                        first = frame.ts
                    last = frame.ts
        return count, (last - first) if first is not None else 0.0

    def _wanted(self, ip: bytes) -> bool:
        try:
            seg = tcpip.parse(ip)
        except WireError:
            return False
        if seg.dport not in self.ports:
            return False
        return any(port == seg.dport and (ip is None or ip == seg.dst)
                   for ip, port in self.services)

    def start_loop(self) -> bool:
        """Open the file for the next loop; False when every loop was played."""
        if self._file is not None:
            self._account(self._file)
            self._file.close()
            self._file = None
        if self.loop >= self.loops:
            self.exhausted = True
            return False
        self.loop += 1
        self._file = _open(self.path)
        self._frames = iter(self._file)
        self._start = self.clock()
        self._first = self._prev = -1.0
        self._skipped_time = 0.0
        self.waiting_for_drain = False
        self._advance()
        return True

    def _account(self, f: CaptureFile) -> None:
        for table, source in ((self.errors, f.errors), (self.skipped, f.skipped)):
            for k, v in source.items():
                if v:
                    table[k] = table.get(k, 0) + v

    def _advance(self) -> None:
        """Read up to the next client→service frame and work out when it is due."""
        self._next = None
        for frame in self._frames:
            self.read += 1
            if self._wanted(frame.ip):
                self._next = frame
                break
        else:
            return
        if self._first < 0:
            self._first = self._prev = frame.ts
        gap = frame.ts - self._prev
        if self.max_gap and gap > self.max_gap:
            self._skipped_time += gap - self.max_gap
            self.gaps_capped += 1
        self._prev = frame.ts
        self._next_due = self._start + (frame.ts - self._first - self._skipped_time) / self.speed

    def dispatch(self, callback: Callable[[bytes, int], None]) -> int:
        """Hand over the frames that are due; at the end of a loop, wait for `drained()`."""
        if self._file is None and not self.exhausted and not self.waiting_for_drain:
            self.start_loop()
        now = self.clock()
        n = 0
        while self._next is not None and n < BATCH and self._next_due <= now:
            self.matched += 1
            n += 1
            callback(self._next.ip, 0)
            self._advance()
        if self._next is None and self._file is not None:
            self._account(self._file)
            self._file.close()
            self._file = None
            # The next loop waits until this one's sessions are over: the same client
            # ports and ISNs come again.
            self.waiting_for_drain = self.loop < self.loops
            self.exhausted = not self.waiting_for_drain
        return n

    def drained(self) -> None:
        """The caller saw every session of the loop end: start the next one."""
        if self.waiting_for_drain:
            self.start_loop()

    def wait(self, now: float) -> float:
        """Seconds until the next frame is due (0: now; inf: nothing scheduled)."""
        if self._next is None:
            return 0.0 if (self._file is None and not self.exhausted
                           and not self.waiting_for_drain) else float("inf")
        return max(0.0, self._next_due - now)

    def position(self) -> float:
        """Capture seconds replayed so far in this loop (for the time left)."""
        return (self._prev - self._first) if self.loop else 0.0

    def stats(self) -> tuple[int, int, int]:
        """(received, dropped, ifdropped) like a live capture: frames read, 0, 0."""
        return self.read, 0, 0

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
