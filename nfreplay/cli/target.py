"""`nfreplay target up|down`: on the target host, the route that sends the replies for the
client networks to the assistant, and (`--resident`) the watcher that keeps it there."""

from __future__ import annotations

import argparse
import logging
import select
import time
from collections.abc import Sequence
from typing import Any

from nfreplay import stats
from nfreplay.cli import lifecycle, logs, options, reporting, teardown
from nfreplay.counters import Counters
from nfreplay.errors import ConfigError
from nfreplay.rules.model import Plan

log = logging.getLogger("nfreplay")

RECHECK = 5.0
"""Seconds between two looks at the routes when rtnetlink says nothing (a backstop: every
route, link and address change already wakes the watcher)."""


class TargetCounters(Counters):
    """What the resident watcher publishes in its stats file (`nfreplay status`)."""

    levels = frozenset({"missing"})

    checks: int  # looks at the routes: one per batch of rtnetlink changes, or per RECHECK
    routes_lost: int  # times a route or rule of the plan was found missing
    routes_restored: int  # of those, put back
    restore_failures: int  # attempts the kernel refused (e.g. the link is still down)
    missing: int  # routes and rules missing right now (0 = the replies go to the assistant)


def target_main(argv: Sequence[str]) -> int:
    p = argparse.ArgumentParser(
        prog="nfreplay target",
        description="On the target host: install (up) or remove (down) the route that sends "
                    "replies for the client networks to the assistant, so they never reach "
                    "real clients. Each client network gets a policy rule (pref 156) to a "
                    "table of its own (156) holding the route via the assistant and, behind "
                    "it, a blackhole route, and a blackhole rule (pref 157) after it: when the "
                    "kernel drops the route (link flap, route flush) the replies are dropped, "
                    "never sent by the default route. All of it carries nfreplay's protocol "
                    "id and is journaled.",
        epilog="examples:\n"
               "  nfreplay target up --clients 198.18.1.0/24 --via 198.18.0.4\n"
               "  nfreplay target up --clients 198.18.1.0/24 --tunnel --tunnel-peers 198.18.0.2\n"
               "      (tunnelled delivery: no assistant; run nfreplay-assist --mode colocated "
               "here)\n"
               "  nfreplay target up --resident   (stay running; what the systemd unit does)\n"
               "  nfreplay target down\n\n" + options.EPILOG_CONFIG,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("action", choices=("up", "down"))
    p.add_argument("--clients", metavar="CIDR[,CIDR]", help="client networks (target.clients)")
    p.add_argument("--via", metavar="IP", help="the assistant's address (target.via); with "
                                              "--tunnel and no --via the replies go into the "
                                              "tunnel device, for a colocated nfreplay-assist")
    p.add_argument("--tunnel", nargs="?", const="vxlan", metavar="vxlan",
                   help="take replayed packets in through a kernel tunnel device (target.tunnel; "
                        "the online hosts run --deliver tunnel with the same --tunnel): a VXLAN "
                        "device on UDP --tunnel-port, accepting only --tunnel-peers (a raw "
                        "PREROUTING rule drops the rest); down removes it")
    p.add_argument("--tunnel-peers", metavar="IP[,IP]",
                   help="the online hosts allowed to send into the tunnel (target.tunnel_peers)")
    p.add_argument("--tunnel-port", metavar="PORT",
                   help="the tunnel's UDP port (target.tunnel_port, default 36525)")
    p.add_argument("--resident", action="store_const", const=True, default=None,
                   help="stay in the foreground and put the route back whenever the kernel "
                        "drops it (rtnetlink); stopping it (SIGTERM, Ctrl-C) removes the "
                        "routes (target.resident, default false: install and exit)")
    options.add_common(p)
    args = p.parse_args(argv)
    if args.action == "up":
        cfg = options.load_config(args, "target", {"clients": "target.clients",
                                                  "via": "target.via",
                                                  "resident": "target.resident",
                                                  "tunnel": "target.tunnel",
                                                  "tunnel_peers": "target.tunnel_peers",
                                                  "tunnel_port": "target.tunnel_port"})
        logs.setup_logging(cfg.general.log_level)
    else:
        cfg = options.config_for_down(args, "nfreplay target down")
    lifecycle.require_root()
    paths = stats.state_paths(cfg.general.state_dir, "target", cfg.general.instance)
    manager = teardown.rule_manager(cfg, "target")
    if args.action == "down":
        pid = lifecycle.stop_running(paths)  # a resident watcher removes the routes itself
        if pid:
            print(f"nfreplay target: stopped pid {pid}")
        return teardown.teardown(manager, "nfreplay target down")
    from nfreplay.rules.model import Tunnel, target_plan
    t = cfg.target
    tunnel = Tunnel(t.tunnel, t.tunnel_peers, t.tunnel_port) if t.tunnel else None
    try:
        plan = target_plan(cfg.general.instance, t.clients, t.via or "", tunnel)
    except ValueError as exc:
        raise ConfigError(f"target: {exc}") from None
    if not cfg.target.resident:
        lifecycle.ensure_not_running(paths, "target", cfg.general.instance)
        manager.up(plan)
        for line in manager.installed():
            print(line)
        return 0
    return resident(manager, plan, paths, cfg.general.instance)


def resident(manager: Any, plan: Plan, paths: stats.StatePaths, instance: str) -> int:
    """Install (or adopt) the plan, then keep it installed until stopped; remove it at stop.

    A restart adopts the routes a previous watcher left (`RuleManager.adopt`) rather than
    removing and reinstalling them, which would open a moment without the policy rules.
    Killed with SIGKILL, it leaves the routes in place: the blackhole keeps failing closed,
    and `nfreplay target down` removes them from the journal.
    """
    from nfreplay.adapters.rtwatch import RouteEvents

    stop = lifecycle.Stop()
    counters = TargetCounters()
    problems: list[str] = []
    with lifecycle.pid_file(paths, "target", instance):
        stats_file = stats.StatsFile(paths.stats, role="target", instance=instance,
                                     levels=TargetCounters.levels)
        events = RouteEvents()  # before the first look: no change between the two is missed
        try:
            if manager.adopt(plan):
                log.info("up: adopting the routes a previous run installed")
            else:
                manager.up(plan)
            log.info("up: %d route(s) and %d rule(s) installed; watching rtnetlink",
                     len(plan.routes), len(plan.policy))
            lifecycle.notify("READY=1")
            missing: list[str] = []
            due = 0.0  # look at once: an adopted plan may be missing a route already
            published = 0.0
            while not stop.requested:
                now = time.monotonic()
                if select.select([events], [], [], max(0.0, min(0.5, due - now)))[0]:
                    events.drain()
                    due = now
                now = time.monotonic()
                if now >= due:
                    missing = _check(manager, plan, counters, missing)
                    due = time.monotonic() + RECHECK
                if now - published >= 1.0:  # as the daemons do: `status` sees it alive
                    published = now
                    extra: stats.TargetExtra = {"missing_routes": missing}
                    reporting.publish(stats_file, counters, extra)
        finally:
            events.close()
            problems = manager.down()
            log.info("down: %s", "complete" if not problems else f"{len(problems)} problem(s)")
    return teardown.report_teardown(problems, "nfreplay target")


def _check(manager: Any, plan: Plan, c: TargetCounters, before: list[str]) -> list[str]:
    """One look: put back what is missing, count and log what changed since the last look
    (`before`: what was missing then, as `repair` returned it)."""
    c.checks += 1
    restored, missing = manager.repair(plan)
    was = {line.split(": ", 1)[0] for line in before}
    now = {line.split(": ", 1)[0] for line in missing}
    c.routes_lost += len((set(restored) | now) - was)
    c.routes_restored += len(restored)
    c.restore_failures += len(missing)
    c.missing = len(missing)
    for line in restored:
        log.warning("restored: %s (the kernel had dropped it)", line)
    for line in missing:
        if line.split(": ", 1)[0] not in was:
            log.warning("missing, cannot restore yet: %s; until it is back the blackhole drops "
                        "the replies to that network", line)
    if was and not missing:
        log.info("all routes in place again")
    return missing
