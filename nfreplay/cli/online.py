"""nfreplay-online: capture a service's client traffic and replay it to the target."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, TextIO

from nfreplay import stats
from nfreplay.cli import lifecycle, options, recording_options, reporting
from nfreplay.cli.status import role_status
from nfreplay.cli import workers as workers_mod
from nfreplay.config import Config, Online
from nfreplay.config import Online as D
from nfreplay.errors import ConfigError
from nfreplay.proto.tcpip import ip2int
from nfreplay.proto.tunnel import ENCAPSULATIONS

if TYPE_CHECKING:
    from nfreplay.adapters.capture import Capture
    from nfreplay.adapters.mirror import VxlanMirror
    from nfreplay.adapters.pcapsource import FileSource
    from nfreplay.adapters.rawsock import LinkSender, RawSender, TunnelSender
    from nfreplay.engine.online import OnlineEngine
    from nfreplay.proto.vxlan import MirrorFilter
    from nfreplay.session.counters import Counters
    from nfreplay.session.selection import Selection

log = logging.getLogger("nfreplay.online")

FLAGS = {
    "service": "online.service",
    "target": "online.target",
    "assistant": "online.assistants",
    "interface": "online.interface",
    "input": "online.input",
    "vxlan_vni": "online.vxlan_vni",
    "connections": "online.connections",
    "mtu": "online.mtu",
    "inject": "online.inject",
    "deliver": "online.deliver",
    "tunnel": "online.tunnel",
    "tunnel_port": "online.tunnel_port",
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
    **{flag: f"online.{flag}" for flag in recording_options.RECORD_FLAGS},
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
With --input vxlan it runs on a collector host instead of production: a traffic mirror (AWS
Traffic Mirroring, Azure vTAP, tc mirred into a vxlan device) sends it copies of production's
packets as VXLAN over UDP 4789, and it replays what the capture filter would have kept.
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
  nfreplay-online up --input vxlan --vxlan-vni 42 --service 198.18.0.2:80 \\
      --target 198.18.0.3:80 --assistant 198.18.0.4      # on a mirror's collector host
  nfreplay-online up --copies 10 --client-pool 198.18.4.0/24 --config /etc/nfreplay/nfreplay.toml
  nfreplay-online status
  nfreplay-online down
"""


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="nfreplay-online", description=DESCRIPTION,
                                epilog=EXAMPLES + "\n" + options.EPILOG_CONFIG,
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
    g.add_argument("--input", metavar="capture|vxlan[:[ADDR:]PORT]",
                   help="where client packets come from: capture = libpcap on --interface; "
                        "vxlan = a traffic mirror's VXLAN datagrams on this UDP port (4789 "
                        "on every address by default), on a collector host (default "
                        f"{D.input})")
    g.add_argument("--vxlan-vni", metavar="VNI",
                   help="with --input vxlan: replay only this VXLAN network id (0-16777215); "
                        "others are counted as mirror_bad (default: any)")
    g.add_argument("--connections", "-C", metavar="N", help=f"control connections per assistant (1-11, default {D.connections})")
    g.add_argument("--mtu", "-M", metavar="BYTES",
                   help="larger captured segments (GRO/TSO) are split to this size "
                        f"(default {D.mtu})")
    g.add_argument("--deliver", choices=("link", "ip", "tunnel"),
                   help="how replayed packets leave: link = straight onto the link to the next "
                        "hop the kernel's route and neighbour tables name (no netfilter or "
                        "conntrack on this host per packet), where the kernel would send "
                        "through the kernel; ip = always through the kernel's IP output (a raw "
                        "socket, like tcpcopy); tunnel = inside a packet from this host's own "
                        "address to the target host's (for networks that drop foreign source "
                        "addresses, a cloud VPC: the target runs `nfreplay target up --tunnel` "
                        f"and a colocated nfreplay-assist) (default {D.deliver})")
    g.add_argument("--inject", choices=("link", "ip"), help="the older spelling of --deliver")
    g.add_argument("--tunnel", choices=tuple(ENCAPSULATIONS),
                   help="--deliver tunnel: the encapsulation, as on the target: vxlan (UDP, "
                        "50 bytes of overhead), fou (UDP, 28), gre (24), ipip (20) "
                        f"(default {D.tunnel})")
    g.add_argument("--tunnel-port", metavar="PORT",
                   help=f"the tunnel's UDP port on the target (vxlan, fou; default {D.tunnel_port})")
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
    reporting.add_stats_interval(g, D.stats_interval)
    reporting.add_metrics_listen(g)
    recording_options.add_record_options(g, D, "production's traffic and what is sent to the target")
    g = p.add_argument_group("offline replay")
    g.add_argument("--pcap", "-i", metavar="FILE", help="replay this pcap/pcapng file")
    g.add_argument("--speed", "-a", metavar="X", help=f"replay X times faster (0.01-1000, default {D.speed:g})")
    g.add_argument("--max-gap", metavar="MS",
                   help="compress idle gaps longer than MS milliseconds to MS (a corrupt "
                        f"timestamp too); 0 = keep every gap (default {D.max_gap:g})")
    g.add_argument("--loop", "-T", dest="loops", metavar="N", help=f"play the file N times (default {D.loops})")
    lifecycle.add_daemon_options(p)
    options.add_common(p)
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
    return lifecycle.role_main(args, "online", FLAGS, up)


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
    mirror = o.input == "vxlan"
    # The mirror's datagrams arrive on one socket: one process reads them ("auto": 1).
    workers = o.workers or (1 if mirror else os.cpu_count() or 1)
    if mirror and workers > 1:
        raise ConfigError("online.workers: the mirror input (online.input = \"vxlan\") "
                          "runs in one worker")
    if mirror and o.pcap:
        raise ConfigError("online.input: a capture file (online.pcap) and the mirror input "
                          "(\"vxlan\") exclude each other")
    if o.vxlan_vni is not None and not mirror:
        raise ConfigError("online.vxlan_vni: only with online.input = \"vxlan\"")
    if workers > 1 and o.pcap:
        raise ConfigError("online.workers: an offline replay (online.pcap) runs in one worker")
    if workers > 1 and (o.client_pool or o.copies > 1):
        raise ConfigError("online.workers: several workers cannot share a client pool yet "
                          "(online.client_pool, online.copies): use 1 worker")
    if o.record_responses and (workers > 1 or o.pcap or mirror):
        raise ConfigError("online.record_responses: recording needs a live capture in one "
                          "worker (not online.pcap or the mirror input, online.workers "
                          "1)")
    recording_options.check_recording(o, "online")
    stats_file = stats.StatsFile(paths.stats, role="online", instance=cfg.general.instance,
                                 levels=counters_mod.Counters.levels)
    server = reporting.bind_metrics(o.metrics_ip, o.metrics_port, "online.metrics_listen",
                                 stats_file)
    lifecycle.output(args, paths)
    stop = lifecycle.Stop()
    line = reporting.StatsLine(STATS_LINE + (MIRROR_STATS_LINE if mirror else ()),
                               o.stats_interval, time.monotonic())
    with lifecycle.pid_file(paths, "online", cfg.general.instance, args.pid_file), \
            reporting.serving(server):
        if workers == 1:
            def report(c: Counters, extra: stats.OnlineExtra) -> None:
                reporting.publish(stats_file, c, extra)
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
# ... and with the mirror input (online.input = "vxlan").
MIRROR_STATS_LINE = (
    ("mirrored", "mirror_packets", True), ("mirror bad", "mirror_bad", False),
    ("mirror duplicates", "mirror_duplicates", False),
)


def delivery(o: Online) -> tuple[RawSender | LinkSender | TunnelSender, int, int]:
    """How replayed packets leave (`online.deliver`): the sender, the largest packet it may
    send (captured segments are split to it) and the largest MSS a replayed SYN may announce
    (0: as captured). A tunnel's outer headers come out of the path's MTU."""
    from nfreplay.adapters.rawsock import LinkSender, NetlinkLookup, RawSender, TunnelSender
    from nfreplay.proto import tunnel

    if o.deliver == "tunnel":  # config.load checked that the sizes leave room
        encap = tunnel.encapsulation(o.tunnel)
        log.info("delivery: inside a %s tunnel to the target host (%s, %d bytes of outer "
                 "headers): packets of at most %d bytes, SYNs' MSS at most %d", o.tunnel,
                 f"UDP {o.tunnel_port}" if encap.udp else f"IP protocol {encap.ip_proto}",
                 encap.overhead, tunnel.inner_mtu(o.mtu, encap), tunnel.max_mss(o.mtu, encap))
        if not o.client_pool:
            log.warning("delivery: the target sees the clients' own addresses (no "
                        "online.client_pool): its target.clients must cover every one of "
                        "them, or its replies to the others leave by its default route; a "
                        "client_pool of addresses nothing else uses avoids that")
        return (TunnelSender(encap, o.tunnel_port), tunnel.inner_mtu(o.mtu, encap),
                tunnel.max_mss(o.mtu, encap))
    raw = RawSender()
    return (LinkSender(raw, NetlinkLookup()) if o.deliver == "link" else raw), o.mtu, 0


def replay(cfg: Config, share: tuple[int, int] | None,
           report: Callable[[Counters, stats.OnlineExtra], None], stop: lifecycle.Stop) -> int:
    """One capture + replay loop until `stop`: the whole instance, or worker `share` = (i, n)
    of n, which replays the client ports p with (p >> 1) % n == i (split in the capture filter, so
    the kernel hands each packet to exactly one worker). `report(counters, extra)` is called
    about once a second."""
    from nfreplay.adapters.capture import Capture
    from nfreplay.adapters.channel import Assistant
    from nfreplay.adapters.pcapsource import FileSource
    from nfreplay.engine.online import OnlineEngine
    from nfreplay.engine.online_run import OnlineRecording, OnlineRun
    from nfreplay.session.counters import Counters
    from nfreplay.session.machine import Params

    o = cfg.online
    assert o.target_ip is not None and o.target_port is not None  # required (config.load)
    n = share[1] if share else 1
    sender, mtu, max_mss = delivery(o)
    params = Params(target_ip=ip2int(o.target_ip), target_port=o.target_port,
                    session_timeout=o.session_timeout, response_timeout=o.response_timeout,
                    keepalive_timeout=o.keepalive_timeout, fake_mss=o.fake_mss,
                    no_wait=o.no_wait, syn_only=o.syn_only,
                    max_sessions=max(1, o.max_sessions // n),
                    max_buffered_bytes=max(1, o.max_buffered_bytes // n), max_mss=max_mss)
    chosen = selection(cfg, n)
    engine_clock = time.monotonic
    counters = Counters()
    source: FileSource | Capture | VxlanMirror
    if o.input == "vxlan":
        source = mirror_source(cfg, counters)
        where = f"what {bpf(cfg)!r} would capture, from the {source.describe()},"
    elif o.pcap:
        # Absolute: --daemon changes directory.
        source = FileSource(os.path.abspath(o.pcap), [(ip2int(sip) if sip else None, sport)
                                     for sip, sport, _, _ in services(cfg)],
                            speed=o.speed, max_gap=o.max_gap, loops=o.loops,
                            clock=engine_clock)
        where = f"{o.pcap} ({source.total} client packets, {source.duration:.1f} s captured)"
    else:
        source = Capture(o.interface, bpf(cfg, share), snaplen=o.snaplen)
        where = f"{bpf(cfg, share)!r} on {o.interface}"
    assistants = [Assistant(ip, port, o.connections) for ip, port in o.assistants]
    engine = OnlineEngine(params, source, sender, assistants, mtu=mtu,
                          reconnect_interval=o.reconnect_interval, clock=engine_clock,
                          selection=chosen, shed_lag=o.shed_lag / 1000, counters=counters)
    recording = None
    if o.record_responses:
        from nfreplay.engine.recorder import OnlineRecorder
        from nfreplay.proto.recording import ONLINE_KINDS

        directory = recording_options.recording_directory(o, "online", ONLINE_KINDS)
        # The service's own answers are captured before segmentation (TSO/GSO: up to 64 KiB
        # and more per packet): libpcap's largest snaplen, so that none is cut.
        record_capture = Capture("any", record_bpf(cfg), snaplen=262144, inbound_only=False)
        recorder = OnlineRecorder(
            [(ip2int(sip) if sip else None, sport, ip2int(tip), tport)
             for sip, sport, tip, tport in services(cfg)], directory,
            recording_options.recording_sampler(o.record_percent))
        engine.record(recorder, record_capture)
        recording = OnlineRecording(directory, recorder, record_capture)
        log.info("recording %.4g %% of the sessions in %s", o.record_percent, directory.path)
    offline = source if isinstance(source, FileSource) else None
    run = OnlineRun(
        engine, source, sender, offline=offline, recording=recording,
        progress=Progress(offline, engine, sys.stderr) if offline is not None else None,
        reconnect_interval=o.reconnect_interval,
        capture={"interface": o.pcap or (f"vxlan:{o.mirror_ip}:{o.mirror_port}"
                                         if o.input == "vxlan" else o.interface),
                 "filter": "" if o.pcap else bpf(cfg)})
    run.connect(stop)
    log.info("up: replaying %s to %s:%d (%s)", where, o.target_ip, o.target_port,
             "compiled hot path" if reporting.compiled() else "pure Python")
    lifecycle.settle_gc()
    if share is None:
        lifecycle.notify("READY=1")  # the capture is open (workers: the supervisor says it)
    run.run(stop, report)
    return 0


def mirror_filter(cfg: Config) -> MirrorFilter:
    """What the mirror input keeps: what `bpf(cfg)` would capture, of `online.vxlan_vni`."""
    from nfreplay.proto.vxlan import MirrorFilter

    wanted = services(cfg)
    return MirrorFilter([(ip2int(sip) if sip else None, sport) for sip, sport, _, _ in wanted],
                        [(ip2int(tip), tport) for _, _, tip, tport in wanted],
                        cfg.online.vxlan_vni)


def mirror_source(cfg: Config, counters: Counters) -> VxlanMirror:
    """The mirror input's socket (online.input = "vxlan")."""
    from nfreplay.adapters.mirror import VxlanMirror

    o = cfg.online
    return VxlanMirror(o.mirror_ip, o.mirror_port, mirror_filter(cfg), counters)


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


def entry() -> None:
    raise SystemExit(options.run_main(main))
