"""nfreplay-online: capture a service's client traffic and replay it to the target."""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Sequence

from nfreplay import stats
from nfreplay.cli import common
from nfreplay.proto.tcpip import ip2int

log = logging.getLogger("nfreplay.online")

FLAGS = {
    "service": "online.service",
    "target": "online.target",
    "assistant": "online.assistants",
    "interface": "online.interface",
    "connections": "online.connections",
    "session_timeout": "online.session_timeout",
    "response_timeout": "online.response_timeout",
    "keepalive_timeout": "online.keepalive_timeout",
    "no_wait": "online.no_wait",
    "syn_only": "online.syn_only",
    "fake_mss": "online.fake_mss",
    "max_sessions": "online.max_sessions",
}

DESCRIPTION = """\
Runs on the online (production) host. `up` captures the packets clients send to the service
(libpcap, BPF "tcp and dst port P [and dst host H]"), replays each session to the target with
the client's own address (raw socket), and paces it on the reply headers nfreplay-assist
reports over the control channel (TCP 36524; an existing intercept works too). Sessions
already open when it starts are joined mid-stream with a faked handshake (--syn-only: not).
`up` stays in the foreground until SIGINT/SIGTERM; `down` stops it."""

EXAMPLES = """\
examples:
  nfreplay-online up --service 80 --target 198.18.0.3:80 --assistant 198.18.0.4 -i eth1
  nfreplay-online up --config /etc/nfreplay/nfreplay.toml --daemon
  nfreplay-online status
  nfreplay-online down
"""


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="nfreplay-online", description=DESCRIPTION,
                                epilog=EXAMPLES + "\n" + common.EPILOG_CONFIG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("action", choices=("up", "down", "status"), help="what to do")
    g = p.add_argument_group("online settings (override [online] in the config file)")
    g.add_argument("--service", metavar="[IP:]PORT", help="the service whose clients are copied")
    g.add_argument("--target", metavar="IP:PORT", help="the service under test")
    g.add_argument("--assistant", metavar="IP[:PORT][,...]",
                   help="nfreplay-assist (or intercept) address(es), port 36524 by default")
    g.add_argument("--interface", "-i", metavar="IFACE", help="capture interface (default any)")
    g.add_argument("--connections", metavar="N", help="control connections per assistant (1-11, default 2)")
    g.add_argument("--session-timeout", metavar="SECONDS",
                   help="end a session after this long without a reply (default 120)")
    g.add_argument("--response-timeout", metavar="SECONDS",
                   help="longest a request waits for the previous response (default 3)")
    g.add_argument("--keepalive-timeout", metavar="SECONDS",
                   help="keep an idle session that did send requests this long (default 600)")
    g.add_argument("--no-wait", action="store_const", const=True, default=None,
                   help="send requests without waiting for the previous response")
    g.add_argument("--syn-only", action="store_const", const=True, default=None,
                   help="replay only sessions whose SYN is captured (no mid-stream joins)")
    g.add_argument("--fake-mss", metavar="BYTES", help="MSS of faked handshakes (default 1460)")
    g.add_argument("--max-sessions", metavar="N", help="sessions in memory at most (default 200000)")
    g.add_argument("--daemon", action="store_true", help="detach after start-up")
    common.add_common(p)
    return p


def main(argv: Sequence[str]) -> int:
    return common.role_main(parser().parse_args(argv), "online", FLAGS, up)


def bpf(cfg) -> str:  # type: ignore[no-untyped-def]
    o = cfg.online
    expr = f"tcp and dst port {o.service_port}"
    if o.service_ip:
        expr += f" and dst host {o.service_ip}"
    # Never capture what we inject (it goes to the target), even on "any".
    return expr + f" and not (dst host {o.target_ip} and dst port {o.target_port})"


def up(cfg, paths: stats.StatePaths, *, daemon: bool) -> int:  # type: ignore[no-untyped-def]
    from nfreplay.adapters.capture import Capture
    from nfreplay.adapters.channel import Assistant
    from nfreplay.adapters.rawsock import RawSender
    from nfreplay.engine.online import OnlineEngine
    from nfreplay.session.machine import Params

    o = cfg.online
    params = Params(target_ip=ip2int(o.target_ip), target_port=o.target_port,
                    session_timeout=o.session_timeout, response_timeout=o.response_timeout,
                    keepalive_timeout=o.keepalive_timeout, fake_mss=o.fake_mss,
                    no_wait=o.no_wait, syn_only=o.syn_only, max_sessions=o.max_sessions)
    capture = Capture(o.interface, bpf(cfg), snaplen=o.snaplen)
    sender = RawSender()
    assistants = [Assistant(ip, port, o.connections) for ip, port in o.assistants]
    if daemon:
        os.makedirs(cfg.general.state_dir, exist_ok=True)
        common.daemonize(paths.pid[: -len(".pid")] + ".log")
    stop = common.Stop()
    engine = OnlineEngine(params, capture, sender, assistants, mtu=o.mtu,
                          reconnect_interval=o.reconnect_interval)
    with common.pid_file(paths, "online", cfg.general.instance):
        stats_file = stats.StatsFile(paths.stats, role="online", instance=cfg.general.instance)
        engine.connect(engine.clock())
        if not engine.channel_up:
            log.warning("no assistant reachable yet (%s); retrying every %.0f s — sessions "
                        "start once one answers", ", ".join(a.name for a in assistants),
                        o.reconnect_interval)
        log.info("up: capturing %r on %s, replaying to %s:%d", bpf(cfg), o.interface,
                 o.target_ip, o.target_port)
        next_publish = 0.0
        next_check = engine.now + 30.0
        try:
            while not stop.requested:
                engine.step(engine.next_timeout())
                if engine.now >= next_check:
                    next_check = engine.now + 30.0
                    warn_if_handshakes_fail(engine.c)
                if engine.now >= next_publish:
                    next_publish = engine.now + 1.0
                    received, dropped, ifdropped = capture.stats()
                    extra = {
                        "capture": {"interface": o.interface, "filter": bpf(cfg),
                                    "received": received, "dropped": dropped,
                                    "ifdropped": ifdropped},
                        "channel": {"up": engine.channel_up, "drops": engine.channel_drops,
                                    "announces_failed": engine.announces_failed,
                                    "assistants": [a.name for a in assistants]},
                        "send_errors": sender.errors,
                        "sessions_in_table": len(engine.table),
                    }
                    common.publish(stats_file, engine.c, extra)
        finally:
            engine.shutdown()
            capture.close()
            sender.close()
    return 0


def warn_if_handshakes_fail(c) -> None:  # type: ignore[no-untyped-def]
    """tcpcopy's "many connections can't be established", with what to check."""
    opened = c.sessions_opened
    if opened >= 20 and c.sessions_established * 100 < opened * 80:
        log.warning("only %d of %d sessions reached the target's handshake: are the target's "
                    "replies routed to the assistant (nfreplay target up) and queued there "
                    "(nfreplay status on the assistant: packets_queued)?",
                    c.sessions_established, opened)


def entry() -> None:
    raise SystemExit(common.run_main(main))
