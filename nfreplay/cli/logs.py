"""Where the daemons' log lines go and how they look: journald's priority prefix under
systemd (no timestamp of ours), stdout without a timestamp in a container (the runtime
stamps each line), a timestamp elsewhere; the log file reopened on SIGHUP."""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

log = logging.getLogger("nfreplay")

class _JournalFormatter(logging.Formatter):
    """sd-daemon(3) style: `<priority>` first, which journald stores as the line's priority
    (so `journalctl -p warning` finds warnings), and no timestamp of our own."""

    _PRIORITY = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3,
                 logging.CRITICAL: 2}

    def format(self, record: logging.LogRecord) -> str:
        priority = self._PRIORITY.get(record.levelno, 6)
        return "\n".join(f"<{priority}>{line}" for line in super().format(record).splitlines())


def to_journal(stream: Any) -> bool:
    """Whether `stream` is the journal's stream (systemd sets JOURNAL_STREAM=dev:inode)."""
    try:
        dev, ino = (int(x) for x in os.environ.get("JOURNAL_STREAM", "").split(":"))
        st = os.fstat(stream.fileno())
    except (ValueError, OSError, AttributeError):
        return False
    return (st.st_dev, st.st_ino) == (dev, ino)


def _in_container() -> bool:
    """Whether this runs as a container's program: the runtimes that say so (podman,
    systemd-nspawn, LXC) set `container` in its environment, and so does nfreplay's image
    (Containerfile) for those that do not (docker, Kubernetes)."""
    return bool(os.environ.get("container"))


_PLAIN = "%(levelname)s %(name)s: %(message)s"
_TIMESTAMPED = "%(asctime)s " + _PLAIN


def setup_logging(level: str, stream: Any = None) -> None:
    """Log lines to `stream` (default: stderr), formatted for where they end up: the journal
    (a priority, no timestamp: journald stamps them), a container's output (stdout, no
    timestamp: the runtime stamps each line, `podman logs -t`, `kubectl logs
    --timestamps`), anything else (a terminal, a file) with a timestamp."""
    if stream is None and not to_journal(sys.stderr) and _in_container():
        stream = sys.stdout
    stream = stream or sys.stderr
    handler = logging.StreamHandler(stream)
    if to_journal(stream):
        handler.setFormatter(_JournalFormatter(_PLAIN))
    elif stream is sys.stdout and _in_container():
        handler.setFormatter(logging.Formatter(_PLAIN))
    else:
        handler.setFormatter(logging.Formatter(_TIMESTAMPED))
    logging.basicConfig(level=getattr(logging, level.upper()), handlers=[handler], force=True)


def _log_to_file() -> None:
    """Once stdout and stderr go to a log file (--log-file, --daemon): timestamps again."""
    for handler in logging.getLogger().handlers:
        if not isinstance(handler.formatter, _JournalFormatter):
            handler.setFormatter(logging.Formatter(_TIMESTAMPED))


_log_path: str | None = None  # where stdout/stderr go after daemonize()


def _open_log(path: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    _log_to_file()


def redirect(path: str) -> None:
    """stdout and stderr to the log file at `path` (absolute) from now on, and again at each
    SIGHUP (`reopen_log`); OSError if it cannot be opened."""
    global _log_path
    _open_log(path)
    _log_path = path


def reopen_log() -> None:
    """SIGHUP: write to the log file's path anew (after a rotation), or say there is none."""
    if _log_path is None:
        log.info("SIGHUP: logging to stderr, nothing to reopen (only SIGINT/SIGTERM stop)")
        return
    try:
        _open_log(_log_path)
    except OSError as exc:
        log.warning("SIGHUP: cannot reopen %s: %s", _log_path, exc.strerror or exc)
        return
    log.info("SIGHUP: log file %s reopened", _log_path)
