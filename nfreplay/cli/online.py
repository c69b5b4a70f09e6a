"""nfreplay-online: capture a service's client traffic and replay it to the target."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TextIO

from nfreplay import stats
from nfreplay.cli import common
from nfreplay.cli.status import role_status
from nfreplay.cli import workers as workers_mod
from nfreplay.config import Config
from nfreplay.config import Online as D
from nfreplay.errors import ConfigError
from nfreplay.proto.tcpip import ip2int

if TYPE_CHECKING:
    from nfreplay.adapters.capture import Capture
    from nfreplay.adapters.pcapsource import FileSource
    from nfreplay.adapters.recordfiles import RecordingDirectory
    from nfreplay.engine.recorder import OnlineRecorder
    from nfreplay.engine.online import OnlineEngine
    from nfreplay.session.counters import Counters
    from nfreplay.session.selection import Selection

log = logging.getLogger("nfreplay.online")

FLAGS = {
    "service": "online.service",
    "target": "online.target",
    "assistant": "online.assistants",
    "interface": "online.interface",
    "connections": "online.connections",
    "mtu": "online.mtu",
    "inject": "online.inject",
    "session_timeout": "online.session_timeout",
    "response_timeout": "online.response_timeout",
    "keepalive_timeout": "online.keepalive_timeout",
    "no_wait": "online.no_wait",
    "syn_only": "online.syn_only",
    "fake_mss": "online.fake_mss",
    "max_sessions": "online.max_sessions",
    "max_buffered_bytes": "online.max_buffered_bytes",
    "max_new_per_second": "online.max_new_per_second",
    "shed_lag": "online.shed_lag",
    "stats_interval": "online.stats_interval",
    "metrics_listen": "online.metrics_listen",
    **{flag: f"online.{flag}" for flag in common.RECORD_FLAGS},
    "workers": "online.workers",
    "more_services": "online.more_services",
    "client_pool": "online.client_pool",
    "copies": "online.copies",
    "percent": "online.percent",
    "ramp": "online.ramp",
    "allow": "online.allow",
    "deny": "online.deny",
    "request_pattern": "online.request_pattern",
    "pcap": "online.pcap",
    "speed": "online.speed",
    "max_gap": "online.max_gap",
    "loops": "online.loops",
}

DESCRIPTION = """\
Runs on the online (production) host. `up` captures the packets clients send to the service
(libpcap, BPF "tcp and dst port P [and dst host H]"), replays each session to the target with
the client's own address (raw socket), and paces it on the reply headers nfreplay-assist
reports over the control channel (TCP 36524; an existing intercept works too). Sessions
already open when it starts are joined mid-stream with a faked handshake (--syn-only: not).
With --pcap it replays a capture file instead, on the file's own clock, and exits when done.
`up` stays in the foreground until SIGINT/SIGTERM; `down` stops it.

tcpcopy's options work too, with their meaning: -x [IP:]PORT-IP:PORT (service and target),
-s (assistants), -C (connections per assistant), -c (client pool), -n (copies), -r (percent), -t (session timeout),
-k (keep-alive timeout), -W (no wait), -O (SYN only), -M (MTU), -D (fake MSS),
-i FILE (offline: a capture file), -a (speed), -T (loops)."""

EXAMPLES = """\
examples:
  nfreplay-online up --service 80 --target 198.18.0.3:80 --assistant 198.18.0.4 --interface eth1
  nfreplay-online up -x 80-198.18.0.3:80 -s 198.18.0.4      # the same, tcpcopy's spelling
  nfreplay-online up --pcap traffic.pcap --speed 4 --service 80 --target 198.18.0.3:80 \\
      --assistant 198.18.0.4
  nfreplay-online up --copies 10 --client-pool 198.18.4.0/24 --config /etc/nfreplay/nfreplay.toml
  nfreplay-online status
  nfreplay-online down
"""


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="nfreplay-online", description=DESCRIPTION,
                                epilog=EXAMPLES + "\n" + common.EPILOG_CONFIG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("action", choices=("up", "down", "status"), help="what to do")
    g = p.add_argument_group("what to copy, where to (override [online] in the config file)")
    g.add_argument("--service", metavar="[IP:]PORT", help="the service whose clients are copied")
    g.add_argument("--target", metavar="IP:PORT", help="the service under test")
    g.add_argument("-x", dest="tcpcopy_x", metavar="[IP:]PORT-IP:PORT",
                   help="tcpcopy's spelling of --service and --target together")
    g.add_argument("--more-services", metavar="[IP:]PORT-IP:PORT[,...]",
                   help="more service ports to copy, each to its own target")
    g.add_argument("--assistant", "-s", metavar="IP[:PORT][,...]",
                   help="nfreplay-assist (or intercept) address(es), port 36524 by default")
    g.add_argument("--interface", metavar="IFACE", help=f"capture interface (default {D.interface})")
    g.add_argument("--connections", "-C", metavar="N", help=f"control connections per assistant (1-11, default {D.connections})")
    g.add_argument("--mtu", "-M", metavar="BYTES",
                   help="larger captured segments (GRO/TSO) are split to this size "
                        f"(default {D.mtu})")
    g.add_argument("--inject", choices=("link", "ip"),
                   help="how replayed packets leave: link = straight onto the link to the next "
                        "hop the kernel's route and neighbour tables name (no netfilter or "
                        "conntrack on this host per packet), where the kernel would send "
                        "through the kernel; ip = always through the kernel's IP output (a raw "
                        f"socket, like tcpcopy) (default {D.inject})")
    g = p.add_argument_group("how sessions are replayed")
    g.add_argument("--session-timeout", "-t", metavar="SECONDS",
                   help=f"end a session after this long without a reply (default {D.session_timeout:g})")
    g.add_argument("--response-timeout", metavar="SECONDS",
                   help="longest a request waits for the previous response "
                        f"(default {D.response_timeout:g})")
    g.add_argument("--keepalive-timeout", "-k", metavar="SECONDS",
                   help="keep an idle session that did send requests this long "
                        f"(default {D.keepalive_timeout:g})")
    g.add_argument("--no-wait", "-W", action="store_const", const=True, default=None,
                   help="send requests without waiting for the previous response")
    g.add_argument("--syn-only", "-O", action="store_const", const=True, default=None,
                   help="replay only sessions whose SYN is captured (no mid-stream joins)")
    g.add_argument("--fake-mss", "-D", metavar="BYTES", help=f"MSS of faked handshakes (default {D.fake_mss})")
    g = p.add_argument_group("which sessions, as whom")
    g.add_argument("--percent", "-r", metavar="P", help=f"replay P %% of sessions, sticky per client ip:port (default {D.percent:g})")
    g.add_argument("--ramp", "-g", action="store_const", const=True, default=None,
                   help="reach --percent gradually, 1 point per second")
    g.add_argument("--allow", metavar="CIDR[,CIDR]", help="replay only these client networks")
    g.add_argument("--deny", metavar="CIDR[,CIDR]", help="never replay these client networks")
    g.add_argument("--request-pattern", metavar="REGEX",
                   help="replay only sessions whose first request matches (its SYN waits for it)")
    g.add_argument("--client-pool", "-c", metavar="SPEC[,SPEC]",
                   help="addresses the target sees instead of the clients' (IPs, a-b ranges, CIDRs)")
    g.add_argument("--copies", "-n", metavar="N",
                   help="replay each session N times, each copy from its own client ip:port "
                        f"(default {D.copies})")
    g.add_argument("--max-sessions", metavar="N", help=f"sessions in memory at most (default {D.max_sessions})")
    g.add_argument("--max-buffered-bytes", metavar="N",
                   help="client bytes all sessions together may hold unsent; while they do, "
                        f"new sessions are refused (sessions_rejected_memory; default {D.max_buffered_bytes})")
    g.add_argument("--max-new-per-second", metavar="N", help="new sessions per second at most (default 0: no limit)")
    g.add_argument("--workers", metavar="N|auto",
                   help="N capture+replay processes, each replaying its share of the client "
                        "ports (split by the kernel's capture filter); auto = one per core "
                        f"(default {D.workers})")
    g.add_argument("--shed-lag", metavar="MS",
                   help="when the capture runs more than MS behind the wire, refuse new sessions "
                        "(counted as sessions_shed) so that admitted ones complete; 0 = never "
                        f"(default {D.shed_lag:g})")
    common.add_stats_interval(g, D.stats_interval)
    common.add_metrics_listen(g)
    common.add_record_options(g, D, "production's traffic and what is sent to the target")
    g = p.add_argument_group("offline replay")
    g.add_argument("--pcap", "-i", metavar="FILE", help="replay this pcap/pcapng file")
    g.add_argument("--speed", "-a", metavar="X", help=f"replay X times faster (0.01-1000, default {D.speed:g})")
    g.add_argument("--max-gap", metavar="MS",
                   help="compress idle gaps longer than MS milliseconds to MS (a corrupt "
                        f"timestamp too); 0 = keep every gap (default {D.max_gap:g})")
    g.add_argument("--loop", "-T", dest="loops", metavar="N", help=f"play the file N times (default {D.loops})")
    common.add_daemon_options(p)
    common.add_common(p)
    return p


def tcpcopy_x(args: argparse.Namespace) -> None:
    """-x [IP:]PORT-IP:PORT[,...] (tcpcopy's mapping syntax): the first mapping gives
    --service and --target, the others online.more_services."""
    if not args.tcpcopy_x:
        return
    first, *more = [m.strip() for m in args.tcpcopy_x.split(",") if m.strip()]
    service, sep, target = first.partition("-")
    if not sep:
        raise ConfigError(f"-x: expected [IP:]PORT-IP:PORT[,...], got {args.tcpcopy_x!r}")
    args.service = args.service or service
    args.target = args.target or target
    if more:
        args.more_services = ",".join(more)


def main(argv: Sequence[str]) -> int:
    args = parser().parse_args(argv)
    tcpcopy_x(args)
    if args.action == "status":
        return role_status(args, "online")
    return common.role_main(args, "online", FLAGS, up)


def services(cfg: Config) -> list[tuple[str | None, int, str, int]]:
    """Every (service ip, service port, target ip, target port) this instance copies."""
    o = cfg.online
    # Required keys: config.load(role="online") refuses a configuration without them.
    assert o.service_port is not None and o.target_ip is not None and o.target_port is not None
    return [(o.service_ip, o.service_port, o.target_ip, o.target_port), *o.more_services]


def bpf(cfg: Config, share: tuple[int, int] | None = None) -> str:
    """The capture filter: the services' ports, never what we inject; with `share` = (i, n),
    only the client ports p with (p >> 1) % n == i (worker i of n; not p % n: Linux gives
    connect() ephemeral ports of one parity)."""
    wanted, injected = [], []
    for sip, sport, tip, tport in services(cfg):
        wanted.append(f"dst port {sport}" + (f" and dst host {sip}" if sip else ""))
        injected.append(f"(dst host {tip} and dst port {tport})")
    # Never capture what we inject (it goes to the target), even on "any".
    expr = (f"tcp and (({') or ('.join(wanted)})) and not ({' or '.join(injected)})"
            if len(wanted) > 1 else
            f"tcp and {wanted[0]} and not {injected[0]}")
    if share is not None and share[1] > 1:
        expr += f" and (tcp[0:2] >> 1) % {share[1]} = {share[0]}"
    return expr


def record_bpf(cfg: Config) -> str:
    """The response recorder's capture filter: production's traffic both ways, and what is
    injected to the targets."""
    parts = []
    for sip, sport, tip, tport in services(cfg):
        parts.append(f"(port {sport}" + (f" and host {sip})" if sip else ")"))
        parts.append(f"(dst host {tip} and dst port {tport})")
    return f"tcp and ({' or '.join(parts)})"


def selection(cfg: Config, workers: int = 1) -> Selection:
    """The operator's choice of sessions, from [online] (rate limits split among workers)."""
    from nfreplay.session.clientpool import parse_pool
    from nfreplay.session.filters import ClientFilter, PayloadPattern
    from nfreplay.session.sampling import Sampler
    from nfreplay.session.selection import Selection

    o = cfg.online
    assert o.target_ip is not None  # required (config.load)
    pool = parse_pool(o.client_pool, exclude=[o.target_ip], key="online.client_pool") \
        if o.client_pool else ()
    return Selection(
        client_filter=ClientFilter(o.allow, o.deny) if (o.allow or o.deny) else None,
        sampler=(Sampler(o.percent, ramp_per_second=1.0 if o.ramp else None)
                 if o.percent < 100 else None),
        new_per_second=max(1, o.max_new_per_second // workers) if o.max_new_per_second else None,
        copies=o.copies, pool=pool,
        payload=PayloadPattern(o.request_pattern) if o.request_pattern else None,
        targets={sport: (ip2int(tip), tport) for _, sport, tip, tport in o.more_services})


def up(cfg: Config, paths: stats.StatePaths, args: argparse.Namespace) -> int:
    from nfreplay.session import counters as counters_mod

    o = cfg.online
    workers = o.workers or os.cpu_count() or 1
    if workers > 1 and o.pcap:
        raise ConfigError("online.workers: an offline replay (online.pcap) runs in one worker")
    if workers > 1 and (o.client_pool or o.copies > 1):
        raise ConfigError("online.workers: several workers cannot share a client pool yet "
                          "(online.client_pool, online.copies): use 1 worker")
    if o.record_responses and (workers > 1 or o.pcap):
        raise ConfigError("online.record_responses: recording needs a live capture in one "
                          "worker (not online.pcap, online.workers 1)")
    common.check_recording(o, "online")
    stats_file = stats.StatsFile(paths.stats, role="online", instance=cfg.general.instance,
                                 levels=counters_mod.Counters.levels)
    server = common.bind_metrics(o.metrics_ip, o.metrics_port, "online.metrics_listen",
                                 stats_file)
    common.output(args, paths)
    stop = common.Stop()
    line = common.StatsLine(STATS_LINE, o.stats_interval, time.monotonic())
    with common.pid_file(paths, "online", cfg.general.instance, args.pid_file), \
            common.serving(server):
        if workers == 1:
            def report(c: Counters, extra: dict[str, Any]) -> None:
                common.publish(stats_file, c, extra)
                line.feed(c.snapshot(), time.monotonic())

            rc = replay(cfg, None, report, stop)
        else:
            rc = workers_mod.supervise(
                workers, lambda share, report, stop: replay(cfg, share, report, stop),
                stats_file, stop, line)
        line.final(time.monotonic())
        return rc


# The log's stats line (online.stats_interval): (label, counter, with a rate).
STATS_LINE = (
    ("sessions", "sessions_opened", True), ("established", "sessions_established", False),
    ("completed", "sessions_completed", False), ("live", "sessions_live", False),
    ("requests", "requests_sent", True), ("captured", "packets_captured", True),
    ("sent", "packets_sent", True), ("records", "records_received", True),
    ("retransmits", "retransmits", False), ("handshake failed", "sessions_handshake_failed",
                                            False),
    ("shed", "sessions_shed", False), ("collided", "sessions_collided", False),
    ("internal errors", "internal_errors", False),
)


def replay(cfg: Config, share: tuple[int, int] | None,
           report: Callable[[Counters, dict[str, Any]], None], stop: common.Stop) -> int:
    """One capture + replay loop until `stop`: the whole instance, or worker `share` = (i, n)
    of n, which replays the client ports p with (p >> 1) % n == i (split in the capture filter, so
    the kernel hands each packet to exactly one worker). `report(counters, extra)` is called
    about once a second."""
    from nfreplay.adapters.capture import Capture
    from nfreplay.adapters.channel import Assistant
    from nfreplay.adapters.pcapsource import FileSource
    from nfreplay.adapters.rawsock import LinkSender, NetlinkLookup, RawSender
    from nfreplay.engine.online import OnlineEngine
    from nfreplay.session.machine import Params

    o = cfg.online
    assert o.target_ip is not None and o.target_port is not None  # required (config.load)
    n = share[1] if share else 1
    params = Params(target_ip=ip2int(o.target_ip), target_port=o.target_port,
                    session_timeout=o.session_timeout, response_timeout=o.response_timeout,
                    keepalive_timeout=o.keepalive_timeout, fake_mss=o.fake_mss,
                    no_wait=o.no_wait, syn_only=o.syn_only,
                    max_sessions=max(1, o.max_sessions // n),
                    max_buffered_bytes=max(1, o.max_buffered_bytes // n))
    chosen = selection(cfg, n)
    engine_clock = time.monotonic
    source: FileSource | Capture
    if o.pcap:
        # Absolute: --daemon changes directory.
        source = FileSource(os.path.abspath(o.pcap), [(ip2int(sip) if sip else None, sport)
                                     for sip, sport, _, _ in services(cfg)],
                            speed=o.speed, max_gap=o.max_gap, loops=o.loops,
                            clock=engine_clock)
        where = f"{o.pcap} ({source.total} client packets, {source.duration:.1f} s captured)"
    else:
        source = Capture(o.interface, bpf(cfg, share), snaplen=o.snaplen)
        where = f"{bpf(cfg, share)!r} on {o.interface}"
    sender: RawSender | LinkSender = RawSender()
    if o.inject == "link":
        sender = LinkSender(sender, NetlinkLookup())
    assistants = [Assistant(ip, port, o.connections) for ip, port in o.assistants]
    engine = OnlineEngine(params, source, sender, assistants, mtu=o.mtu,
                          reconnect_interval=o.reconnect_interval, clock=engine_clock,
                          selection=chosen, shed_lag=o.shed_lag / 1000)
    recording = recorder = record_capture = None
    if o.record_responses:
        from nfreplay.engine.recorder import OnlineRecorder
        from nfreplay.proto.recording import ONLINE_KINDS

        recording = common.recording_directory(o, "online", ONLINE_KINDS)
        # The service's own answers are captured before segmentation (TSO/GSO: up to 64 KiB
        # and more per packet): libpcap's largest snaplen, so that none is cut.
        record_capture = Capture("any", record_bpf(cfg), snaplen=262144, inbound_only=False)
        recorder = OnlineRecorder(
            [(ip2int(sip) if sip else None, sport, ip2int(tip), tport)
             for sip, sport, tip, tport in services(cfg)], recording,
            common.recording_sampler(o.record_percent))
        engine.record(recorder, record_capture)
        log.info("recording %.4g %% of the sessions in %s", o.record_percent, recording.path)
    progress = Progress(source, engine, sys.stderr) if isinstance(source, FileSource) else None
    started = engine.clock()
    engine.connect(engine.clock())
    deadline = engine.clock() + 1.0
    while not engine.channel_up and engine.clock() < deadline and not stop.requested:
        engine.step(0.05)
    if not engine.channel_up:
        log.warning("no assistant reachable yet (%s); retrying every %.0f s — sessions "
                    "start once one answers", ", ".join(a.name for a in assistants),
                    o.reconnect_interval)
    log.info("up: replaying %s to %s:%d (%s)", where, o.target_ip, o.target_port,
             "compiled hot path" if common.compiled() else "pure Python")
    common.settle_gc()
    if share is None:
        common.notify("READY=1")  # the capture is open (workers: the supervisor says it)
    next_publish = 0.0
    next_check = engine.now + CHECK_EVERY
    handshakes = HandshakeWatch()
    capture_drops = common.DropWatch(
        "the capture", "nfreplay-online fell behind the traffic, their sessions lose data "
        "(sessions_capture_gap): replay a share (--percent), add --workers, or keep other "
        "work off this core")
    warned_checksums = False
    last_extra = None
    try:
        while not stop.requested:
            if o.pcap and not engine.channel_up and engine.now - started < 10:
                engine.step(0.1)  # a file waits for its assistant; live traffic cannot
                continue
            engine.step(engine.next_timeout())
            if isinstance(source, FileSource) and offline_step(source, engine):
                break
            if engine.now >= next_check:
                next_check = engine.now + CHECK_EVERY
                handshakes.check(engine.c)
                capture_drops.check(source.stats()[1], CHECK_EVERY)
            if not warned_checksums and engine.c.checksums_fixed:
                warned_checksums = True
                log.warning("captured packets carry unfinished TCP checksums (TX checksum "
                            "offload on a sender that shares this host or hypervisor: veth, "
                            "containers, VMs); nfreplay computes them in full for those "
                            "sessions (checksums_fixed), which costs CPU: `ethtool -K IFACE tx "
                            "off` on the sending side avoids it")
            if engine.now >= next_publish:
                next_publish = engine.now + 1.0
                sender.refresh()  # routes and neighbours change
                received, dropped, ifdropped = source.stats()
                extra = {
                    "capture": {"interface": o.pcap or o.interface,
                                "filter": "" if o.pcap else bpf(cfg),
                                "received": received, "dropped": dropped,
                                "ifdropped": ifdropped,
                                "dropped_last_10s": capture_drops.recent},
                    "channel": {"up": engine.channel_up, "drops": engine.channel_drops,
                                "announces_failed": engine.announces_failed,
                                "assistants": [a.name for a in assistants]},
                    "send_errors": sender.errors,
                    "inject": sender.stats(),
                    "sessions_in_table": len(engine.table),
                }
                if recording is not None and recorder is not None and record_capture:
                    try:
                        recorder.tick(time.time())
                    except Exception:
                        engine._internal_error("the recording's housekeeping")
                    extra["recording"] = {**recording.stats(), "sessions": recorder.sessions,
                                          "capture": dict(zip(("received", "dropped", "ifdropped"),
                                                              record_capture.stats())),
                                          "not_sampled": recorder.not_sampled,
                                          "held_dropped": recorder.held_dropped}
                if chosen.allocator is not None:
                    extra["client_pairs_in_use"] = chosen.allocator.in_use()
                if chosen.client_filter is not None:
                    extra["toa_options_seen"] = chosen.toa_seen
                report(engine.c, extra)
                last_extra = extra
                if progress is not None:
                    progress.show()
    finally:
        try:
            engine.shutdown()
        finally:
            source.close()
            sender.close()
            if record_capture is not None and recorder is not None and recording is not None:
                end_recording(record_capture, recorder, recording)
    if last_extra is not None:
        report(engine.c, last_extra)  # the counters as they end
    if progress is not None:
        progress.summary(engine.clock() - started)
    return 0


def end_recording(capture: Capture, recorder: OnlineRecorder,
                  recording: RecordingDirectory) -> None:
    """Write the recording's last packets and lines, then close it; each step on its own."""
    from nfreplay.engine.recorder import HOLD_SECONDS

    try:
        # The capture hands over a ring block when it is full or 10 ms old: wait for the
        # last one, so that the recording ends with the replay.
        time.sleep(0.02)
        capture.dispatch_ts(recorder.packet)
        recorder.tick(time.time() + HOLD_SECONDS)  # lines still waiting are written
    except Exception as exc:  # a bug: the files written so far stay good
        log.warning("recording: the last packets were not written: %s", exc)
    finally:
        capture.close()
        recording.close()


def offline_step(source: FileSource, engine: OnlineEngine) -> bool:
    """After a wake-up of an offline replay: start the next loop once the sessions of the
    previous one are over; True when the whole replay is done: the file was played and no
    session has anything left to send or to wait for (a session the capture cut before its
    FIN is then reset by the shutdown), or a tail of session_timeout passed."""
    live = engine.c.sessions_live
    if source.waiting_for_drain and live == 0:
        source.drained()
    if not source.exhausted:
        return False
    if engine.tail_since is None:
        engine.tail_since = engine.now
    return (live == 0 or engine.table.quiescent(engine.now)
            or engine.now - engine.tail_since > engine.p.session_timeout)


class Progress:
    """Offline replay progress: a bar on a terminal, a line every 5 s otherwise."""

    def __init__(self, source: FileSource, engine: OnlineEngine, stream: TextIO) -> None:
        self.source, self.engine, self.stream = source, engine, stream
        self.tty = stream.isatty()
        self.last = 0.0

    def line(self) -> str:
        s, c = self.source, self.engine.c
        total = max(1, s.total * s.loops)
        done = s.matched
        left = max(0.0, s.duration - s.position()) / s.speed + \
            (s.loops - s.loop) * s.duration / s.speed
        return (f"loop {s.loop}/{s.loops}  packets {done}/{total} ({100 * done / total:.0f}%)  "
                f"sessions {c.sessions_opened} open {c.sessions_live}  "
                f"completed {c.sessions_completed}  ~{left:.0f}s left")

    def show(self) -> None:
        now = self.engine.now
        if self.tty:
            self.stream.write("\r" + self.line()[:150].ljust(150))
            self.stream.flush()
        elif now - self.last >= 5.0:
            self.last = now
            print(self.line(), file=self.stream, flush=True)

    def summary(self, elapsed: float) -> None:
        s, c = self.source, self.engine.c
        if self.tty:
            self.stream.write("\n")
        snap = c.snapshot()
        not_chosen = ("sessions_filtered", "sessions_sampled_out", "sessions_rate_limited",
                      "sessions_rejected_limit", "sessions_skipped_no_channel")
        skipped = {k[len("sessions_"):]: snap[k] for k in not_chosen if snap[k]}
        lost = {k[len("sessions_"):]: v for k, v in snap.items()
                if k.startswith("sessions_") and v and k not in not_chosen and k not in (
                    "sessions_opened", "sessions_established", "sessions_live",
                    "sessions_completed", "sessions_midstream")}
        errors = ", ".join(f"{k} {v}" for k, v in s.errors.items() if v) or "none"
        print(f"replayed {s.path}: {s.matched} client packets of {s.read} frames in "
              f"{elapsed:.1f} s ({s.loops} loop(s), speed {s.speed:g}); sessions "
              f"{c.sessions_opened} opened, {c.sessions_established} established, "
              f"{c.sessions_completed} completed; ended otherwise: "
              f"{', '.join(f'{k} {v}' for k, v in lost.items()) or 'none'}; not replayed: "
              f"{', '.join(f'{k} {v}' for k, v in skipped.items()) or 'none'}; "
              f"file errors: {errors}; gaps capped: {s.gaps_capped}", file=self.stream,
              flush=True)


CHECK_EVERY = common.CHECK_EVERY


class HandshakeWatch:
    """tcpcopy's "many connections can't be established", with what to check: warned when,
    since the last look, sessions failed their handshake with the target and fewer than 80 %
    of the handshakes that ended succeeded."""

    def __init__(self) -> None:
        self.failed = self.established = 0

    def check(self, c: Counters) -> None:
        failed = c.sessions_handshake_failed - self.failed
        established = c.sessions_established - self.established
        self.failed, self.established = c.sessions_handshake_failed, c.sessions_established
        if failed and established * 100 < (established + failed) * 80:
            log.warning("%d of %d sessions in the last %.0f s got no answer to their SYN from "
                        "the target: are the target's replies routed to the assistant "
                        "(nfreplay target up; nfreplay doctor target) and queued there "
                        "(nfreplay status on the assistant: packets_queued)? Does the target's "
                        "rp_filter or firewall drop packets from the clients' addresses?",
                        failed, failed + established, CHECK_EVERY)


def entry() -> None:
    raise SystemExit(common.run_main(main))
