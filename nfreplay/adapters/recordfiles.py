"""The recording directory (``--record-responses DIR``): pcapng and session-line files,
rotated by size, the directory capped in total, written by a thread of their own.

Invariants:
  * The daemon's loop never waits for the disk: ``packet`` and ``line`` put the item on a
    queue and return. Past ``max_queued`` bytes waiting (a disk slower than the traffic), items
    are dropped and counted (``dropped``), never the replay slowed.
  * Files are ``nfreplay.proto.recording`` names, created 0640 and never over an existing
    file or through a link; a new run continues after the highest sequence number already in
    the directory, so a restart never overwrites a recording. One directory per instance: the
    cap deletes any sequence of these kinds.
  * All kinds rotate together (one sequence number per period, so `compare` finds a period's
    packets and lines side by side) once this sequence's files reach ``file_bytes``. Then, while
    the directory's recording files of these kinds exceed ``max_bytes``, the oldest sequence's
    files are deleted (never the one being written).
  * A write error (disk full) is counted and logged once; the replay goes on.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
from collections.abc import Sequence
from typing import IO, Any

from nfreplay.errors import HostError
from nfreplay.proto.pcapfile import PcapngWriter
from nfreplay.proto.recording import KINDS, file_name, parse_file_name

log = logging.getLogger("nfreplay.recording")

__all__ = ["RecordingDirectory"]

_STOP = object()
_ITEM = 150  # bytes a queued item costs besides its data (tuple, float, object headers)
FILE_MODE = 0o640  # recordings hold production's payloads: not for every local user


def prepare(path: str, key: str) -> str:
    """Make the recording directory (0750) if need be and check that it can be written;
    its absolute path. Raises HostError (one line naming `key`)."""
    try:
        os.makedirs(path, mode=0o750, exist_ok=True)
        if not os.access(path, os.W_OK | os.X_OK):
            raise PermissionError(13, "Permission denied")
    except OSError as exc:
        raise HostError(f"{key} {path}: {exc.strerror or exc}") from None
    return os.path.abspath(path)


class RecordingDirectory:
    """Writes `kinds` (of ``recording.KINDS``) into `path`. Raises HostError if the directory
    cannot be made or written. ``close()`` writes what is queued and stops the thread."""

    def __init__(self, path: str, kinds: Sequence[str], file_bytes: int, max_bytes: int,
                 max_queued: int = 64 << 20, key: str = "record_responses") -> None:
        self.path = prepare(path, key)
        self.kinds = tuple(kinds)
        self.file_bytes = file_bytes
        self.max_bytes = max_bytes
        self.max_queued = max_queued
        self.seq = max((s for _, s in self._existing()), default=0) + 1
        # Written by this thread only (the loop's side) / by the writer thread only.
        self.packets = self.lines = self.dropped = self.queued_bytes_in = 0
        self.queued_bytes_out = self.written_bytes = self.files = self.deleted = 0
        self.errors = 0
        self._q: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._open: dict[str, tuple[IO[bytes], PcapngWriter | None]] = {}
        self._seq_bytes = 0
        self._thread = threading.Thread(target=self._run, name="recording", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ the loop's side

    def _room(self, size: int) -> bool:
        size += _ITEM
        if self.queued_bytes_in - self.queued_bytes_out + size > self.max_queued:
            self.dropped += 1
            return False
        self.queued_bytes_in += size
        return True

    def packet(self, kind: str, ts: float, ip: bytes) -> None:
        if self._room(len(ip)):
            self.packets += 1
            self._q.put((kind, ts, ip))

    def line(self, text: str) -> None:
        data = text.encode()
        if self._room(len(data)):
            self.lines += 1
            self._q.put(("sessions", 0.0, data))

    def stats(self) -> dict[str, object]:
        """For the daemon's stats (status, metrics)."""
        return {"dir": self.path, "packets": self.packets, "session_lines": self.lines,
                "bytes_written": self.written_bytes, "dropped": self.dropped,
                "files": self.files, "files_deleted": self.deleted, "errors": self.errors,
                "sequence": self.seq}

    def close(self) -> None:
        self._q.put(_STOP)
        self._thread.join(timeout=30)

    # ------------------------------------------------------------------ the writer thread

    def _existing(self) -> list[tuple[str, int]]:
        try:
            names = os.listdir(self.path)
        except OSError:
            return []
        found = [parse_file_name(n) for n in names]
        return [f for f in found if f is not None and f[0] in self.kinds]

    def _run(self) -> None:
        stop = False
        while not stop:
            items = [self._q.get()]
            try:
                while len(items) < 4096:
                    items.append(self._q.get_nowait())
            except queue.Empty:
                pass
            for item in items:
                if item is _STOP:
                    stop = True
                    continue
                kind, ts, data = item
                self.queued_bytes_out += len(data) + _ITEM
                self._write(kind, ts, data)
            for stream, _ in self._open.values():
                self._guard(stream.flush)
            if self._seq_bytes >= self.file_bytes:
                self._rotate()
        for stream, _ in self._open.values():
            self._guard(stream.close)
        self._open.clear()

    def _guard(self, call: Any) -> None:
        try:
            call()
        except OSError as exc:
            self._failed(exc)

    def _failed(self, exc: Exception) -> None:
        self.errors += 1
        if self.errors == 1:
            log.warning("recording to %s: %s (counted as errors; recording goes on when it "
                        "can, the replay is not affected)", self.path,
                        getattr(exc, "strerror", None) or exc)

    def _write(self, kind: str, ts: float, data: bytes) -> None:
        try:
            entry = self._open.get(kind)
            if entry is None:
                fresh = self._create(kind)
                writer = PcapngWriter(fresh, if_name=kind) if KINDS[kind] == "pcapng" else None
                entry = self._open[kind] = (fresh, writer)
                self.files += 1
            stream, writer = entry
            before = stream.tell()
            if writer is None:
                stream.write(data)
            else:
                writer.write(ts, data)
            grown = stream.tell() - before
            self._seq_bytes += grown
            self.written_bytes += grown
        except (OSError, ValueError) as exc:  # ValueError: sequence numbers ran out
            self._failed(exc)

    def _create(self, kind: str) -> IO[bytes]:
        """A new file of `kind` in this sequence: never an existing file (another writer's),
        never through a symbolic link; if the name is taken, the next sequence."""
        for _ in range(16):
            path = os.path.join(self.path, file_name(kind, self.seq))
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                             | os.O_CLOEXEC, FILE_MODE)
            except FileExistsError:
                self._rotate()
                continue
            return os.fdopen(fd, "wb")
        raise FileExistsError(17, "every file name taken", self.path)

    def _rotate(self) -> None:
        for stream, _ in self._open.values():
            self._guard(stream.close)
        self._open.clear()
        self._seq_bytes = 0
        self.seq += 1
        self._cap()

    def _cap(self) -> None:
        sizes: dict[int, int] = {}
        for kind, seq in self._existing():
            try:
                size = os.path.getsize(os.path.join(self.path, file_name(kind, seq)))
            except OSError:
                continue
            sizes[seq] = sizes.get(seq, 0) + size
        total = sum(sizes.values())
        for seq in sorted(sizes):
            if total <= self.max_bytes or seq >= self.seq:
                break
            for kind in self.kinds:
                try:
                    os.unlink(os.path.join(self.path, file_name(kind, seq)))
                    self.deleted += 1
                except FileNotFoundError:
                    pass
                except OSError as exc:
                    self._failed(exc)
            total -= sizes[seq]
