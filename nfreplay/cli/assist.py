"""nfreplay-assist: swallow the target's replies and report their headers to nfreplay-online."""

from __future__ import annotations

import argparse
import logging
import warnings
from collections.abc import Sequence
from typing import Any

from nfreplay import stats
from nfreplay.cli import lifecycle, options, recording_options, reporting, teardown
from nfreplay.cli.status import role_status
from nfreplay.config import Assist as D
from nfreplay.config import Config
from nfreplay.errors import ConfigError

log = logging.getLogger("nfreplay.assist")

FLAGS = {
    "target": "assist.target",
    "clients": "assist.clients",
    "mode": "assist.mode",
    "listen": "assist.listen",
    "queue": "assist.queue",
    "passlist": "assist.passlist",
    "fix_ip_forward": "assist.fix_ip_forward",
    "online": "assist.online",
    "max_connections": "assist.max_connections",
    "max_connections_per_peer": "assist.max_connections_per_peer",
    "max_routes": "assist.max_routes",
    "max_routes_per_connection": "assist.max_routes_per_connection",
    "max_parked": "assist.max_parked",
    "max_backlog_bytes": "assist.max_backlog_bytes",
    "stats_interval": "assist.stats_interval",
    "metrics_listen": "assist.metrics_listen",
    **{flag: f"assist.{flag}" for flag in recording_options.RECORD_FLAGS},
}

DESCRIPTION = """\
Runs on the assistant host (or on the target itself with --mode colocated). `up` installs an
iptables NFQUEUE rule for the target's replies to the client networks, binds the queue, and
listens for nfreplay-online (TCP 36524, tcpcopy-compatible: an existing tcpcopy can use it).
Every queued reply is reported to the connection that announced its session and DROPPED.
`up` stays in the foreground until SIGINT/SIGTERM, then removes its rules; `down` stops a
running instance and removes whatever an instance left behind (even after kill -9)."""

EXAMPLES = """\
examples:
  nfreplay-assist up --target 198.18.0.3:80 --clients 198.18.1.0/24
  nfreplay-assist up --mode colocated --target 198.18.0.3:80 --clients 198.18.1.0/24 --daemon
  nfreplay-assist status
  nfreplay-assist down
"""


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="nfreplay-assist", description=DESCRIPTION,
                                epilog=EXAMPLES + "\n" + options.EPILOG_CONFIG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("action", choices=("up", "down", "status"), help="what to do")
    g = p.add_argument_group("assist settings (override [assist] in the config file)")
    g.add_argument("--target", metavar="IP:PORT", help="the service under test whose replies to swallow")
    g.add_argument("--clients", metavar="CIDR[,CIDR]", help="client networks the replies go to")
    g.add_argument("--mode", choices=("assistant", "colocated"),
                   help="assistant: a separate host the target routes replies to (raw PREROUTING); "
                        "colocated: on the target itself (raw OUTPUT)")
    g.add_argument("--listen", metavar="[IP:]PORT", help="control channel address (default 0.0.0.0:36524)")
    g.add_argument("--online", metavar="CIDR[,CIDR]",
                   help="the nfreplay-online (or tcpcopy) hosts allowed on the control channel; "
                        "others are refused and counted (default: loopback only)")
    g.add_argument("--max-connections", metavar="N", help=f"control connections at most (default {D.max_connections})")
    g.add_argument("--max-connections-per-peer", metavar="N",
                   help="control connections per online host at most "
                        f"(default {D.max_connections_per_peer})")
    g.add_argument("--max-routes", metavar="N",
                   help=f"announced sessions held at most (default {D.max_routes})")
    g.add_argument("--max-routes-per-connection", metavar="N",
                   help="announced sessions per control connection at most "
                        f"(default {D.max_routes_per_connection})")
    g.add_argument("--max-parked", metavar="N",
                   help="replies held for sessions not announced yet (a SYN-ACK can beat its "
                        f"announcement), at most (default {D.max_parked})")
    g.add_argument("--max-backlog-bytes", metavar="N",
                   help="bytes queued for a control connection that does not read; past it "
                        f"the connection is closed (default {D.max_backlog_bytes})")
    reporting.add_stats_interval(g, D.stats_interval)
    reporting.add_metrics_listen(g)
    recording_options.add_record_options(g, D, "the target's replies in full")
    g.add_argument("--queue", metavar="N", help=f"NFQUEUE number (default {D.queue})")
    g.add_argument("--passlist", metavar="IP[,IP]", help="client addresses whose replies pass untouched")
    g.add_argument("--fix-ip-forward", action="store_const", const=True, default=None,
                   help="set net.ipv4.ip_forward=0 if needed (restored by down) instead of refusing")
    lifecycle.add_daemon_options(g)
    options.add_common(p)
    return p


def main(argv: Sequence[str]) -> int:
    args = parser().parse_args(argv)
    if args.action == "status":
        return role_status(args, "assist")
    return lifecycle.role_main(args, "assist", FLAGS, up)


def up(cfg: Config, paths: stats.StatePaths, args: argparse.Namespace) -> int:
    import ipaddress

    from nfreplay.adapters.channel import Listener
    from nfreplay.adapters.nfqueue import COPY_RANGE, Queue
    from nfreplay.engine.assist import LOOPBACK, AssistCounters, AssistEngine
    from nfreplay.engine.assist_run import AssistRun
    from nfreplay.limits import Limits
    from nfreplay.engine.recorder import AssistRecorder
    from nfreplay.proto.recording import TARGET_KINDS
    from nfreplay.rules.model import assist_plan

    a = cfg.assist
    assert a.target_ip is not None and a.target_port is not None  # required (config.load)
    try:
        plan = assist_plan(cfg.general.instance, a.target_ip, a.target_port, a.clients, a.mode,
                           a.queue, a.passlist, a.fix_ip_forward,
                           ip_forward_hint="pass --fix-ip-forward or set assist.fix_ip_forward = true")
    except ValueError as exc:
        raise ConfigError(f"assist: {exc}") from None
    manager = teardown.rule_manager(cfg, "assist")
    # Fail on a taken port before touching the firewall.
    listener = Listener(a.listen_ip, a.listen_port)
    recording_options.check_recording(a, "assist")
    stats_file = stats.StatsFile(paths.stats, role="assist", instance=cfg.general.instance,
                                 levels=AssistCounters.levels)
    server = reporting.bind_metrics(a.metrics_ip, a.metrics_port, "assist.metrics_listen",
                                 stats_file, nfqueue=True)
    lifecycle.output(args, paths)
    stop = lifecycle.Stop()
    allowed = tuple(ipaddress.IPv4Network(n) for n in a.online) or LOOPBACK
    engine = AssistEngine(listener, allowed=allowed, limits=Limits(
        connections=a.max_connections, connections_per_peer=a.max_connections_per_peer,
        routes=a.max_routes, routes_per_connection=a.max_routes_per_connection,
        parked=a.max_parked, backlog=a.max_backlog_bytes))
    problems: list[str] = []
    with lifecycle.pid_file(paths, "assist", cfg.general.instance, args.pid_file), \
            reporting.serving(server):
        queue = None
        started = False
        recording = recorder = None
        try:
            callback, copy_range = engine.on_packet, COPY_RANGE
            recording = recording_options.recording_directory(a, "assist", TARGET_KINDS)
            if recording is not None:
                router = engine.router
                recorder = AssistRecorder(
                    engine.on_packet,
                    lambda key: router.lookup(key) is not None or router.is_parked(key),
                    recording, recording_options.recording_sampler(a.record_percent))
                callback, copy_range = recorder, 0xFFFF
                log.info("recording the target's replies to %.4g %% of the sessions in %s",
                         a.record_percent, recording.path)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # rcvbuf capped by rmem_max
                queue = Queue(a.queue, callback, copy_range=copy_range)
            engine.queue = queue
            manager.up(plan)
            started = True
            log.info("up: queue %d bound, %d rule(s) installed, listening on %s:%d",
                     a.queue, len(plan.rules), a.listen_ip, a.listen_port)
            lifecycle.settle_gc()
            lifecycle.notify("READY=1")
            if not a.online:
                log.warning("control channel: only loopback may connect: set assist.online "
                            "(--online) to the online hosts' addresses")
            line = reporting.StatsLine(STATS_LINE, a.stats_interval, engine.now)

            def report(c: AssistCounters, extra: stats.AssistExtra) -> None:
                reporting.publish(stats_file, c, extra)
                line.feed(c.snapshot(), engine.now)

            AssistRun(engine, queue, a.queue, f"{a.listen_ip}:{a.listen_port}",
                      _RecordingStats(recording, recorder) if recording is not None else None
                      ).run(stop, report)
            line.feed(engine.c.snapshot(), engine.now)
            line.final(engine.now)
        finally:
            # The NFQUEUE rule goes before the queue is unbound (see RuleManager).
            problems = manager.down()
            if queue is not None:
                queue.close()
            engine.shutdown()
            if recording is not None:
                recording.close()
            if started:
                log.info("down: %s", "complete" if not problems else f"{len(problems)} problem(s)")
    return teardown.report_teardown(problems, "nfreplay-assist")


class _RecordingStats:
    """The recording's figures for the stats file: its directory's and the recorder's."""

    def __init__(self, directory: Any, recorder: Any) -> None:
        self.directory, self.recorder = directory, recorder

    def stats(self) -> dict[str, Any]:
        return {**self.directory.stats(), "truncated": self.recorder.truncated,
                "errors": self.recorder.errors + self.directory.errors}


# The log's stats line (assist.stats_interval): (label, counter, with a rate).
STATS_LINE = (
    ("replies", "packets_queued", True), ("records sent", "records_sent", True),
    ("announced", "client_adds", True), ("routes", "routes", False),
    ("connections", "connections_live", False), ("unrouted", "records_unrouted", False),
    ("refused", "connections_refused", False), ("collided", "sessions_collided", False),
    ("internal errors", "internal_errors", False),
)


def entry() -> None:
    raise SystemExit(options.run_main(main))
