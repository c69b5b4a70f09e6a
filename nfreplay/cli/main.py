"""nfreplay: `status` of everything on this host, and `target up|down` for the target's route."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
from collections.abc import Sequence

from nfreplay import status
from nfreplay.cli import common
from nfreplay.errors import ConfigError

log = logging.getLogger("nfreplay")

DESCRIPTION = """\
nfreplay copies live TCP traffic from an online server to a target server; the target's
replies are swallowed by nfreplay-assist. This command shows the state of the nfreplay
daemons on this host and manages the target host's route.

commands:
  status             daemons' counters, NFQUEUE state (/proc/net/netfilter/nfnetlink_queue)
                     and the rules/routes each instance installed
  target up|down     on the target host: route the client networks' replies via the
                     assistant (tagged; `down` removes only this instance's routes)

The online and assist roles have their own commands: nfreplay-online, nfreplay-assist."""

EXAMPLES = """\
examples:
  nfreplay status
  nfreplay status --json
  nfreplay target up --clients 198.18.1.0/24 --via 198.18.0.4
  nfreplay target down
"""


def main(argv: Sequence[str]) -> int:
    if argv and argv[0] == "target":
        return target_main(argv[1:])
    if argv and argv[0] == "status":
        return status_main(argv[1:])
    p = argparse.ArgumentParser(prog="nfreplay", description=DESCRIPTION, epilog=EXAMPLES,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("command", choices=("status", "target"), help="status | target up|down")
    p.parse_args(argv[:1] if argv else argv)
    return 2  # unreachable: argparse exits on a missing/unknown command


def status_main(argv: Sequence[str]) -> int:
    p = argparse.ArgumentParser(prog="nfreplay status",
                                description="Show nfreplay daemons, NFQUEUE state and installed rules/routes.")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--role", choices=("online", "assist", "target"), help="only this role")
    p.add_argument("--no-rules", action="store_true",
                   help="skip reading iptables and routes (works without root)")
    common.add_common(p)
    args = p.parse_args(argv)
    cfg = common.load_config(args, "status", {})
    instance = args.instance
    installed = None
    if not args.no_rules and os.geteuid() == 0:
        managers: dict[str, object] = {}

        def installed(tag: str) -> list[str]:
            _, role, inst = tag.split(":", 2)
            c = dataclasses.replace(cfg, general=dataclasses.replace(cfg.general, instance=inst))
            if tag not in managers:
                managers[tag] = common.rule_manager(c, role)
            return managers[tag].installed()  # type: ignore[attr-defined]

    data = status.collect(cfg.general.state_dir, instance, installed=installed)
    if args.role:
        data["daemons"] = [d for d in data["daemons"] if d["role"] == args.role]
        if "installed" in data:
            data["installed"] = [i for i in data["installed"]
                                 if i["owner"].split(":")[1] == args.role]
    print(status.render_json(data) if args.json else status.render_table(data))
    return 0


def target_main(argv: Sequence[str]) -> int:
    p = argparse.ArgumentParser(
        prog="nfreplay target",
        description="On the target host: install (up) or remove (down) the route that sends "
                    "replies for the client networks to the assistant, so they never reach "
                    "real clients. Routes carry nfreplay's protocol id and are journaled.",
        epilog="example: nfreplay target up --clients 198.18.1.0/24 --via 198.18.0.4\n\n"
               + common.EPILOG_CONFIG,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("action", choices=("up", "down"))
    p.add_argument("--clients", metavar="CIDR[,CIDR]", help="client networks (target.clients)")
    p.add_argument("--via", metavar="IP", help="the assistant's address (target.via)")
    common.add_common(p)
    args = p.parse_args(argv)
    cfg = common.load_config(args, "target" if args.action == "up" else "status",
                             {"clients": "target.clients", "via": "target.via"})
    common.setup_logging(cfg.general.log_level)
    common.require_root()
    manager = common.rule_manager(cfg, "target")
    if args.action == "down":
        return common.report_teardown(manager.down(), "nfreplay target down")
    from nfreplay.rules.model import target_plan
    try:
        plan = target_plan(cfg.general.instance, cfg.target.clients, cfg.target.via or "")
    except ValueError as exc:
        raise ConfigError(f"target: {exc}") from None
    manager.up(plan)
    for line in manager.installed():
        print(line)
    return 0


def entry() -> None:
    raise SystemExit(common.run_main(main))
