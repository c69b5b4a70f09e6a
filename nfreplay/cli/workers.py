"""Several capture+replay processes as one nfreplay-online instance (`online.workers`).

The supervisor (the instance's pid file, its stats file, the target of `down`) forks N
workers; worker i replays the client ports p with (p >> 1) % N == i (Linux hands out
ephemeral ports of one parity to connect(), so p % N would leave a worker idle), a split done
by each worker's capture filter, so the kernel hands every packet to exactly one worker and a
session never spans two. Each worker has its own capture, raw socket, session table and control
connections. About once a second each sends its counters up a pipe; the supervisor publishes
their sum, so `status` shows one instance.

Never half an instance: a worker that exits brings the instance down (the others are
stopped and `up` fails, so systemd's Restart= starts it whole again); a supervisor killed
with SIGKILL takes its workers with it (PR_SET_PDEATHSIG).
"""

from __future__ import annotations

import ctypes
import logging
import multiprocessing
import os
import signal
import time
from collections.abc import Callable, Mapping
from multiprocessing.connection import Connection, wait
from typing import Any

from nfreplay import stats
from nfreplay.cli import lifecycle, reporting

log = logging.getLogger("nfreplay.online")

#: replay(share, report, stop) -> exit code, run in each worker.
Replay = Callable[[tuple[int, int], Callable[[Any, Mapping[str, Any]], None], lifecycle.Stop], int]
_PR_SET_PDEATHSIG = 1
STOP_TIMEOUT = 8.0  # seconds a worker gets to reset its sessions and exit (`down` waits 10)


def supervise(n: int, replay: Replay, stats_file: stats.StatsFile, stop: lifecycle.Stop,
              line: reporting.StatsLine | None = None) -> int:
    """Run `n` workers until `stop` or until one of them exits; 1 if one failed. `line` is
    fed the summed counters."""
    ctx = multiprocessing.get_context("fork")
    procs: list[multiprocessing.process.BaseProcess] = []
    pipes: list[Connection] = []
    for i in range(n):
        recv, send = ctx.Pipe(duplex=False)
        proc = ctx.Process(target=_worker, args=(replay, (i, n), send, os.getpid()),
                           name=f"nfreplay-online worker {i}")
        proc.start()
        send.close()
        procs.append(proc)
        pipes.append(recv)
    log.info("up: %d workers (pids %s), worker i replays the client ports p with "
             "(p >> 1) %% %d == i",
             n, ", ".join(str(p.pid) for p in procs), n)
    lifecycle.notify("READY=1")
    latest: list[tuple[dict[str, int], dict[str, Any]] | None] = [None] * n
    failed = ""
    try:
        while not stop.requested and not failed:
            wait([*pipes, *(p.sentinel for p in procs)], timeout=1.0)
            _drain(pipes, latest)
            for i, p in enumerate(procs):
                if p.exitcode is not None and not _stopping_too(stop, p.exitcode):
                    failed = f"worker {i} (pid {p.pid}) exited with {p.exitcode}"
                    break
            if all(x is not None for x in latest):
                counters = _publish(stats_file, latest, procs)
                if line is not None:
                    line.feed(counters, time.monotonic())
    finally:
        if failed:
            log.error("%s: stopping the whole instance", failed)
        for p in procs:
            if p.exitcode is None:
                p.terminate()  # SIGTERM: the worker resets its sessions and exits
        deadline = time.monotonic() + STOP_TIMEOUT
        for p in procs:
            p.join(max(0.0, deadline - time.monotonic()))
            if p.exitcode is None:
                log.warning("worker pid %d did not stop: killing it", p.pid)
                p.kill()
                p.join()
        _drain(pipes, latest)
        if all(x is not None for x in latest):
            counters = _publish(stats_file, latest, procs)
            if line is not None:
                line.feed(counters, time.monotonic())
    return 1 if failed or any(p.exitcode for p in procs if p.exitcode != -signal.SIGTERM) else 0


def _stopping_too(stop: lifecycle.Stop, exitcode: int) -> bool:
    """A worker that ended cleanly while the instance is being stopped is no failure: a
    signal to the whole process group (Ctrl-C, systemd's stop) reaches the workers and the
    supervisor at once, and the supervisor may notice their exit before its own signal."""
    deadline = time.monotonic() + 1.0
    while exitcode == 0 and not stop.requested and time.monotonic() < deadline:
        time.sleep(0.05)
    return exitcode == 0 and stop.requested


def _worker(replay: Replay, share: tuple[int, int], pipe: Connection, parent: int) -> None:
    # Dies with the supervisor, even after its SIGKILL (then nobody would stop us).
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass
    stop = lifecycle.Stop()
    if os.getppid() != parent:  # the supervisor died before prctl took effect
        stop.requested = True
    prefix = f"worker {share[0]}: "
    for handler in logging.getLogger().handlers:
        handler.addFilter(_Prefix(prefix))

    def report(counters: Any, extra: Mapping[str, Any]) -> None:
        try:
            pipe.send((counters.snapshot(), {**extra, "process": reporting.process_usage()}))
        except OSError:
            stop.requested = True  # the supervisor is gone

    code = 1
    try:
        code = replay(share, report, stop)
    except Exception as exc:  # one line in the log; the supervisor stops the instance
        log.error("%s: %s", type(exc).__name__, exc)
        log.debug("worker traceback", exc_info=True)
    finally:
        pipe.close()
        logging.shutdown()
        os._exit(code)


class _Prefix(logging.Filter):
    def __init__(self, prefix: str) -> None:
        super().__init__()
        self.prefix = prefix

    def filter(self, record: logging.LogRecord) -> bool:
        if not getattr(record, "_worker_prefixed", False):
            record.msg = self.prefix + str(record.msg)
            record._worker_prefixed = True  # type: ignore[attr-defined]
        return True


def _drain(pipes: list[Connection], latest: list[Any]) -> None:
    for i, r in enumerate(pipes):
        try:
            while r.poll():
                latest[i] = r.recv()
        except (EOFError, OSError):
            continue


def _publish(stats_file: stats.StatsFile, latest: list[Any], procs: list[Any]
             ) -> dict[str, int]:
    """The workers' counters summed, their capture and channel figures merged; returns the
    summed counters."""
    counters: dict[str, int] = {}
    for snapshot, _ in latest:
        for k, v in snapshot.items():
            counters[k] = counters.get(k, 0) + v
    extra = stats.merge_online([extra for _, extra in latest])
    extra["compiled"] = reporting.compiled()
    extra["workers"] = [{"pid": p.pid, "sessions_opened": snap["sessions_opened"],
                         "sessions_live": snap["sessions_live"]}
                        for p, (snap, _) in zip(procs, latest)]
    try:
        stats_file.write(counters, extra)
    except OSError as exc:  # a full /run must not kill the replay
        log.warning("stats: %s", exc)
    return counters
