"""What every entry point shares: error translation, logging, config loading, the daemon
lifecycle (pid file, signals, stats publication, teardown) and `down` of a crashed instance."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import resource
import signal
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from nfreplay import config as config_mod
from nfreplay import stats
from nfreplay.errors import ConfigError, HostError, NfreplayError

log = logging.getLogger("nfreplay")

EPILOG_CONFIG = (
    "Settings come from the TOML file (--config, default /etc/nfreplay/nfreplay.toml); "
    "command-line flags override it."
)


def run_main(main: Callable[[Sequence[str]], int], argv: Sequence[str] | None = None) -> int:
    """Call `main`, turning our errors into one line on stderr and an exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    try:
        return main(args)
    except NfreplayError as exc:
        if debug:
            raise
        prog = os.path.basename(sys.argv[0]) or "nfreplay"
        # Under systemd, the journal stores the reason a unit failed at error priority.
        err = "<3>" if _to_journal(sys.stderr) else ""
        print(f"{err}{prog}: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130


def add_common(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("common options")
    g.add_argument("--config", metavar="FILE", help="TOML configuration file "
                   "(default /etc/nfreplay/nfreplay.toml if it exists)")
    g.add_argument("--instance", metavar="NAME", help="instance name: tags rules "
                   "nfreplay:<role>:NAME and names state files (default: default)")
    g.add_argument("--state-dir", metavar="DIR", help="pid, journal and stats files (default /run/nfreplay)")
    g.add_argument("--backend", choices=("auto", "nft", "legacy"),
                   help="iptables backend (auto = whatever the host's iptables uses)")
    g.add_argument("--log-level", choices=("debug", "info", "warning", "error"))
    g.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    add_version(g)


def add_version(parser: Any) -> None:
    from nfreplay import __version__

    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")


def load_config(args: argparse.Namespace, role: str, mapping: Mapping[str, str]) -> config_mod.Config:
    """Load the file named by --config with the flags in `mapping` (dest -> dotted key) on top."""
    overrides: dict[str, object] = {
        "general.instance": args.instance,
        "general.state_dir": args.state_dir,
        "general.backend": args.backend,
        "general.log_level": args.log_level,
    }
    for dest, key in mapping.items():
        overrides[key] = getattr(args, dest, None)
    return config_mod.load(args.config, overrides, role=role)


class _JournalFormatter(logging.Formatter):
    """sd-daemon(3) style: `<priority>` first, which journald stores as the line's priority
    (so `journalctl -p warning` finds warnings), and no timestamp of our own."""

    _PRIORITY = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3,
                 logging.CRITICAL: 2}

    def format(self, record: logging.LogRecord) -> str:
        priority = self._PRIORITY.get(record.levelno, 6)
        return "\n".join(f"<{priority}>{line}" for line in super().format(record).splitlines())


def _to_journal(stream: Any) -> bool:
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
    if stream is None and not _to_journal(sys.stderr) and _in_container():
        stream = sys.stdout
    stream = stream or sys.stderr
    handler = logging.StreamHandler(stream)
    if _to_journal(stream):
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


def require_root() -> None:
    if os.geteuid() != 0:
        raise HostError("needs root (or CAP_NET_ADMIN and CAP_NET_RAW): run it with sudo")


class Stop:
    """SIGINT/SIGTERM only set this flag; the loop notices within one wake-up. SIGHUP never
    stops a daemon (a logrotate `postrotate` sends it): it reopens the log file."""

    def __init__(self) -> None:
        self.requested = False
        self.signal = 0
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self._handler)
        signal.signal(signal.SIGHUP, lambda _signum, _frame: reopen_log())

    def _handler(self, signum: int, _frame: object) -> None:
        self.requested = True
        self.signal = signum


_log_path: str | None = None  # where stdout/stderr go after daemonize()


def _open_log(path: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    _log_to_file()


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


RECORD_FLAGS = ("record_responses", "record_percent", "record_file_bytes", "record_max_bytes")


def add_record_options(parser: Any, defaults: Any, what: str) -> None:
    """`--record-responses DIR` and its companions (online/assist.record_*)."""
    parser.add_argument("--record-responses", metavar="DIR",
                        help=f"record {what} in DIR for `nfreplay compare` (pcapng, rotated by "
                             "size; default: no recording)")
    parser.add_argument("--record-percent", metavar="P",
                        help="record P %% of the replayed sessions, chosen by the client "
                             "address the target sees (give the online host and the "
                             f"assistant the same P; default {defaults.record_percent:g})")
    parser.add_argument("--record-file-bytes", metavar="N",
                        help=f"rotate recording files past N bytes (default "
                             f"{defaults.record_file_bytes})")
    parser.add_argument("--record-max-bytes", metavar="N",
                        help="keep the recording directory under N bytes, deleting the oldest "
                             f"files (default {defaults.record_max_bytes})")


def check_recording(section: Any, role: str) -> None:
    """Refuse bad recording settings, and make the directory, before `--daemon` detaches (so
    the operator sees it: exit 2 or 3)."""
    if not section.record_responses:
        return
    if section.record_max_bytes < 2 * section.record_file_bytes:
        raise ConfigError(f"{role}.record_max_bytes: must be at least twice "
                          f"{role}.record_file_bytes ({section.record_file_bytes})")
    from nfreplay.adapters.recordfiles import prepare

    prepare(section.record_responses, f"{role}.record_responses")


def recording_directory(section: Any, role: str, kinds: Sequence[str]) -> Any:
    """The recording directory of `role`'s settings, writing, or None when it does not
    record (`check_recording` first)."""
    if not section.record_responses:
        return None
    check_recording(section, role)
    from nfreplay.adapters.recordfiles import RecordingDirectory

    return RecordingDirectory(section.record_responses, kinds, section.record_file_bytes,
                              section.record_max_bytes, key=f"{role}.record_responses")


def recording_sampler(percent: float) -> Any:
    """Which copies are recorded: the same choice on both sides (see engine.recorder)."""
    if percent >= 100:
        return None
    from nfreplay.engine.recorder import RECORD_SEED
    from nfreplay.session.sampling import Sampler

    return Sampler(percent, seed=RECORD_SEED)


def add_daemon_options(parser: Any) -> None:
    """`--daemon`, `--log-file`, `--pid-file` (tcpcopy's -d, -l, -P)."""
    parser.add_argument("--daemon", "-d", action="store_true",
                        help="detach after start-up (log: --log-file, or <state dir>/"
                             "<role>-<instance>.log)")
    parser.add_argument("--log-file", "-l", metavar="FILE",
                        help="log to FILE instead of stderr; SIGHUP reopens it (logrotate)")
    parser.add_argument("--pid-file", "-P", metavar="FILE",
                        help="also write the pid to FILE (the state dir always has one)")


def output(args: argparse.Namespace, paths: stats.StatePaths) -> None:
    """Where a daemon's log goes, per add_daemon_options; detaches with --daemon."""
    if args.daemon:
        os.makedirs(os.path.dirname(paths.pid), exist_ok=True)
        daemonize(args.log_file or paths.pid[: -len(".pid")] + ".log")
    elif args.log_file:
        global _log_path
        _log_path = os.path.abspath(args.log_file)
        try:
            _open_log(_log_path)
        except OSError as exc:
            raise HostError(f"--log-file {args.log_file}: {exc.strerror or exc}") from None


def daemonize(log_path: str) -> None:
    """Classic double fork; stdout/stderr go to `log_path`. The parent exits 0 once the child
    is started (errors after that land in the log and in `status`)."""
    global _log_path
    path = os.path.abspath(log_path)  # before the chdir below
    if os.fork() > 0:
        os._exit(0)
    os.setsid()
    if os.fork() > 0:
        os._exit(0)
    os.chdir("/")
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    _log_path = path
    _open_log(path)


def ensure_not_running(paths: stats.StatePaths, role: str, instance: str) -> None:
    """One line and no start-up at all (checked before `--daemon` detaches, so the
    operator sees it) if this instance already runs."""
    pid = stats.running_pid(paths.pid)
    if pid is not None and pid != os.getpid():
        raise NfreplayError(f"{role} instance {instance!r} is already running (pid {pid}); "
                            f"stop it with: nfreplay-{role} down --instance {instance}")


@contextlib.contextmanager
def pid_file(paths: stats.StatePaths, role: str, instance: str,
             extra: str | None = None) -> Iterator[None]:
    """The instance's pid file (and `extra`, --pid-file) while the body runs."""
    ensure_not_running(paths, role, instance)
    os.makedirs(os.path.dirname(paths.pid), exist_ok=True)
    stats.write_pid(paths.pid)
    if extra:
        try:
            stats.write_pid(extra)
        except OSError as exc:
            os.unlink(paths.pid)
            raise HostError(f"--pid-file {extra}: {exc.strerror or exc}") from None
    try:
        yield
    finally:
        for path in (paths.pid, paths.stats, extra):
            with contextlib.suppress(FileNotFoundError, TypeError):
                os.unlink(path)  # type: ignore[arg-type]


def stop_running(paths: stats.StatePaths, timeout: float = 10.0) -> int | None:
    """SIGTERM the running instance (its own teardown runs), SIGKILL after `timeout`.
    Returns the pid that was stopped, if any."""
    pid = stats.running_pid(paths.pid)
    if pid is None:
        return None
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not stats.pid_alive(pid):
            return pid
        time.sleep(0.05)
    log.warning("pid %d did not stop within %.0f s: killing it", pid, timeout)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    while stats.pid_alive(pid):
        time.sleep(0.05)
    return pid


def report_teardown(problems: list[str], what: str) -> int:
    """Print teardown problems (one line each); exit code 0 only when teardown was complete."""
    for p in problems:
        print(f"{what}: teardown incomplete: {p}", file=sys.stderr)
    return 1 if problems else 0


def process_usage() -> dict[str, float]:
    """CPU seconds and peak memory of this process (tcpcopy logs the same every 60 s)."""
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return {"cpu_user_s": round(ru.ru_utime, 2), "cpu_sys_s": round(ru.ru_stime, 2),
            "max_rss_kib": ru.ru_maxrss}


def settle_gc() -> None:
    """Once a daemon is set up, before its loop: what the imports and the setup made is moved
    out of the collector's reach (gc.freeze: full collections no longer walk it), and the
    young generation may grow to 5 000 objects before it is collected. Measured on
    nfreplay-online at 5 000 short sessions/s (gc.callbacks, 8 s) and with 3 000 idle
    keep-alive sessions (RSS): the default 700 spent 3.5 % of its CPU collecting, 2 040 bytes
    per idle session; 5 000: 1.1 %, 2 180 bytes; 20 000: 0.6 %, 2 730 bytes (garbage waits
    longer)."""
    import gc

    gc.collect()
    gc.freeze()
    gc.set_threshold(5_000, 20, 20)


def notify(state: str) -> None:
    """sd_notify(3) without libsystemd: `state` ("READY=1", "STOPPING=1") to the datagram
    socket systemd names in NOTIFY_SOCKET (Type=notify units); nothing without one."""
    import socket

    path = os.environ.get("NOTIFY_SOCKET", "")
    if not path:
        return
    if path.startswith("@"):  # an abstract socket
        path = "\0" + path[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(path)
            sock.sendall(state.encode())
    except OSError as exc:
        log.warning("cannot notify systemd (%s): %s", state, exc.strerror or exc)


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


CHECK_EVERY = 10.0  # seconds between two looks for trouble worth a warning


class DropWatch:
    """One WARN line, with `hint`, each time a running drop count (the capture's, the kernel
    queue's) went up since the previous look. Looked at every CHECK_EVERY seconds."""

    def __init__(self, what: str, hint: str) -> None:
        self.what, self.hint = what, hint
        self.seen = 0  # both counts start at 0 with the daemon (its capture, its queue)
        self.recent = 0  # dropped between the last two looks (status: "drops rising")

    def check(self, total: int, seconds: float) -> None:
        self.recent = max(total - self.seen, 0)
        if self.recent:
            log.warning("%s dropped %d packets in the last %.0f s: %s", self.what,
                        self.recent, seconds, self.hint)
        self.seen = total


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


def role_main(args: argparse.Namespace, role: str, flags: Mapping[str, str],
              up: Callable[..., int]) -> int:
    """`up` and `down` of a daemon role (online, assist); `status` is `cli.status.role_status`."""
    if args.action == "up":
        cfg = load_config(args, role, flags)
        setup_logging(cfg.general.log_level)
    else:
        cfg = config_for_down(args, f"nfreplay-{role} down")
    require_root()
    paths = stats.state_paths(cfg.general.state_dir, role, cfg.general.instance)
    if args.action == "up":
        ensure_not_running(paths, role, cfg.general.instance)
        return up(cfg, paths, args)
    pid = stop_running(paths)
    print(f"nfreplay-{role}: stopped pid {pid}" if pid else f"nfreplay-{role}: not running")
    # After a kill -9 the dead daemon's files are left: they go too.
    for path in (paths.pid, paths.stats):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
    if role == "online" and not os.path.exists(paths.journal):
        print(f"nfreplay-{role} down: nothing to remove")
        return 0  # the online role installs nothing unless its journal says so
    # Also after a kill -9: whatever the instance installed goes (the journal says what).
    return teardown(rule_manager(cfg, role), f"nfreplay-{role} down")


def config_for_down(args: argparse.Namespace, what: str) -> config_mod.Config:
    """The settings `down` needs ([general]: instance, state dir, backend), also when the file
    no longer loads (edited while the daemon ran): `down` must still remove what the journal
    says was installed, so the flags and defaults stand in, with a warning. Sets up logging."""
    try:
        cfg = load_config(args, "status", {})
        setup_logging(cfg.general.log_level)
        return cfg
    except ConfigError as exc:
        # Not load(None): that reads the default file again, the one that failed. What the
        # file's [general] says still counts, as far as it reads.
        general = _general_table(args.config or config_mod.DEFAULT_PATH)
        overrides = {f"general.{key}": getattr(args, key) or general.get(key)
                     for key in ("instance", "state_dir", "backend")}
        try:
            cfg = config_mod.load(os.devnull, overrides, role="status")
        except ConfigError:
            cfg = config_mod.load(os.devnull, {f"general.{key}": getattr(args, key) for key
                                               in ("instance", "state_dir", "backend")},
                                  role="status")
        setup_logging(cfg.general.log_level)
        log.warning("%s: the configuration does not load (%s): removing what instance %r "
                    "installed, per its journal in %s", what, exc, cfg.general.instance,
                    cfg.general.state_dir)
        return cfg


def _general_table(path: str) -> dict[str, str]:
    """The text values of a TOML file's [general] table, or {} if it does not read."""
    import tomllib

    try:
        with open(path, "rb") as fh:
            general = tomllib.load(fh).get("general")
    except (OSError, ValueError):
        return {}
    if not isinstance(general, dict):
        return {}
    return {k: v for k, v in general.items() if isinstance(v, str)}


def teardown(manager: Any, what: str) -> int:
    """`down` of what `manager` installed, saying what went (or that nothing was there)."""
    try:
        before = manager.installed()
    except NfreplayError:
        before = []  # cannot list: `down` still works from the journal, and says so
    problems = manager.down()
    if not problems:
        for line in before:
            gone = line.removeprefix("MISSING: ")
            print(f"{what}: removed {gone}" if gone == line else
                  f"{what}: {gone} was already gone")
        if not before:
            print(f"{what}: nothing to remove")
    return report_teardown(problems, what)


def rule_manager(cfg: config_mod.Config, role: str) -> Any:
    """The rule manager of `role` for this instance, on the host's backends."""
    from nfreplay.rules import iptables
    from nfreplay.rules.journal import Journal
    from nfreplay.rules.links import IpLinkBackend
    from nfreplay.rules.manager import RuleManager
    from nfreplay.rules.model import owner_tag
    from nfreplay.rules.netnslock import NetnsLock
    from nfreplay.rules.routes import RtnetlinkRouteBackend
    from nfreplay.rules.sysctl import ProcSysctlBackend

    paths = stats.state_paths(cfg.general.state_dir, role, cfg.general.instance)
    backend = iptables.select_backend(cfg.general.backend)
    backend.probe()
    return RuleManager(owner_tag(role, cfg.general.instance), Journal(paths.journal), backend,
                       RtnetlinkRouteBackend(), ProcSysctlBackend(),
                       sweep=iptables.sweep_backends(backend),
                       links=IpLinkBackend() if role == "target" else None,
                       lock=NetnsLock())
