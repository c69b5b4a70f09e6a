"""`nfreplay status` (and `nfreplay-online|assist status`): the daemons' counters, NFQUEUE
state and what each instance installed, read from the state directory and the kernel."""

from __future__ import annotations

import argparse
import dataclasses
import os
from collections.abc import Sequence

from nfreplay import status
from nfreplay.cli import common


def status_main(argv: Sequence[str]) -> int:
    p = argparse.ArgumentParser(
        prog="nfreplay status",
        description="Show nfreplay daemons, NFQUEUE state and installed rules/routes, then one "
                    "verdict line. Exit code: 0 healthy, 1 degraded (handshakes failing, "
                    "drops, no control connection, stale stats), 2 broken (a daemon dead, its "
                    "queue unbound, a route or rule missing), 3 nothing running.")
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
    code, line = status.verdict(data)
    data["verdict"] = {"code": code, "line": line}
    print(status.render_json(data) if args.json else status.render_table(data) + line)
    return code


def role_status(args: argparse.Namespace, role: str) -> int:
    """`nfreplay-<role> status`: `nfreplay status --role <role>` with the same file options."""
    passthrough = ["--role", role]
    for flag in ("config", "instance", "state_dir"):
        if getattr(args, flag):
            passthrough += ["--" + flag.replace("_", "-"), getattr(args, flag)]
    return status_main(passthrough)
