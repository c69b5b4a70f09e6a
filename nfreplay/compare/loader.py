"""Reading a recording from its two directories: the one module of ``nfreplay.compare`` that
touches files.

A file may end inside a block or a line (a recorder that was killed): what is complete is
read, the rest is counted in ``Inputs``, and reading goes on with the next file. A directory
that does not exist, holds no recording files, or holds a file that is not a capture at all is
bad input: ``ConfigError`` (exit code 2), one line naming it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from nfreplay.errors import ConfigError, WireError
from nfreplay.proto.pcapfile import open_capture
from nfreplay.proto.recording import (
    ONLINE_KINDS,
    TARGET_KINDS,
    SessionLine,
    decode_line,
    parse_file_name,
)

__all__ = ["Inputs", "Recording", "open_recording"]

#: A session line longer than this is not one.
_MAX_LINE = 4096


@dataclass(slots=True)
class Inputs:
    """What was read: files per kind, packets, and what could not be used."""

    files: dict[str, int] = field(default_factory=dict)
    packets: dict[str, int] = field(default_factory=dict)
    capture_errors: dict[str, int] = field(default_factory=dict)
    truncated_files: list[str] = field(default_factory=list)
    empty_files: list[str] = field(default_factory=list)
    bad_session_lines: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "files": dict(self.files),
            "packets": dict(self.packets),
            "capture_errors": {k: v for k, v in self.capture_errors.items() if v},
            "truncated_files": list(self.truncated_files),
            "empty_files": list(self.empty_files),
            "bad_session_lines": self.bad_session_lines,
        }


def _listing(path: str, what: str, kinds: tuple[str, ...]) -> dict[str, list[str]]:
    if not os.path.isdir(path):
        raise ConfigError(f"{what} {path}: not a directory")
    try:
        names = os.listdir(path)
    except OSError as exc:
        raise ConfigError(f"{what} {path}: {exc.strerror or exc}") from None
    found: dict[str, list[tuple[int, str]]] = {k: [] for k in kinds}
    for name in names:
        parsed = parse_file_name(name)
        if parsed is not None and parsed[0] in found:
            found[parsed[0]].append((parsed[1], os.path.join(path, name)))
    if not any(found.values()):
        expected = ", ".join(f"{k}-NNNNNN" for k in kinds)
        raise ConfigError(f"{what} {path}: no recording files ({expected})")
    return {k: [p for _, p in sorted(v)] for k, v in found.items()}


class Recording:
    """The files of one recording. ``lines`` is read at once; ``frames(kind)`` streams a
    kind's captures in sequence order."""

    def __init__(self, online_dir: str, target_dir: str) -> None:
        self.inputs = Inputs()
        self._files = _listing(online_dir, "ONLINE_DIR", ONLINE_KINDS)
        self._files.update(_listing(target_dir, "TARGET_DIR", TARGET_KINDS))
        for kind, paths in self._files.items():
            self.inputs.files[kind] = len(paths)
        self.lines = self._read_lines()
        # Refuse a file that is not a capture before any work is done. An empty one is a
        # recorder killed right after it created the file: counted, skipped.
        for kind in ("production", "to-target", "target"):
            for path in list(self._files[kind]):
                if os.path.getsize(path) == 0:
                    self.inputs.empty_files.append(os.path.basename(path))
                    self._files[kind].remove(path)
                else:
                    self._open(path).close()

    def _read_lines(self) -> list[SessionLine]:
        lines = []
        for path in self._files["sessions"]:
            try:
                with open(path, "rb") as f:
                    for raw in f:
                        if not raw.strip():
                            continue
                        if len(raw) > _MAX_LINE or not raw.endswith(b"\n"):
                            # a cut last line (killed recorder) or garbage
                            self.inputs.bad_session_lines += 1
                            continue
                        try:
                            lines.append(decode_line(raw))
                        except WireError:
                            self.inputs.bad_session_lines += 1
            except OSError as exc:
                raise ConfigError(f"{path}: {exc.strerror or exc}") from None
        return lines

    @staticmethod
    def _open(path: str) -> Any:
        try:
            return open_capture(path)
        except OSError as exc:
            raise ConfigError(f"{path}: {exc.strerror or exc}") from None
        except WireError as exc:
            raise ConfigError(str(exc)) from None

    def frames(self, kind: str) -> Iterator[tuple[float, bytes]]:
        """``(ts, ip)`` of every packet of ``kind``'s files, file after file."""
        for path in self._files[kind]:
            with self._open(path) as cap:
                for frame in cap:
                    yield frame.ts, frame.ip
                self.inputs.packets[kind] = (
                    self.inputs.packets.get(kind, 0) + cap.frames
                )
                for k, v in cap.errors.items():
                    if v and k != "snaplen_cut":
                        self.inputs.capture_errors[k] = (
                            self.inputs.capture_errors.get(k, 0) + v
                        )
                if cap.errors["truncated_record"]:
                    self.inputs.truncated_files.append(os.path.basename(path))


def open_recording(online_dir: str, target_dir: str) -> Recording:
    """Check and list the two directories; raises ``ConfigError`` for bad input."""
    return Recording(online_dir, target_dir)
