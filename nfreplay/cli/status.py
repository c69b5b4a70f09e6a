"""`nfreplay status` (and `nfreplay-online|assist status`): the daemons' counters, NFQUEUE
state and what each instance installed, read from the state directory and the kernel."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

from nfreplay import stats, status
from nfreplay.cli import options, teardown


def status_main(argv: Sequence[str]) -> int:
    p = argparse.ArgumentParser(
        prog="nfreplay status",
        epilog="Counters are grouped (sessions, packets, channel, capture; the assistant's "
               "kernel queue, records, connections) with their rate per second over the last "
               f"{stats.RATE_WINDOW:g} s; levels such as sessions_live have no rate.",
        description="Show nfreplay daemons, NFQUEUE state and installed rules/routes, then one "
                    "verdict line. Exit code: 0 healthy, 1 degraded (handshakes failing, "
                    "drops, no control connection, stale stats), 2 broken (a daemon dead, its "
                    "queue unbound, a route or rule missing), 3 nothing running.")
    shown = p.add_mutually_exclusive_group()
    shown.add_argument("--json", action="store_true", help="machine-readable output")
    shown.add_argument("--watch", nargs="?", type=_interval, const=2.0, metavar="SECONDS",
                       help="redraw the table every SECONDS (default 2) like top, until ^C")
    p.add_argument("--all", action="store_true", help="also show the counters still at 0")
    p.add_argument("--role", choices=("online", "assist", "target"), help="only this role")
    p.add_argument("--no-rules", action="store_true",
                   help="skip reading iptables and routes (works without root)")
    shown.add_argument("--probe", action="store_true",
                       help="a container's liveness/readiness probe: print the verdict line "
                            "only, and exit 0 also when degraded (a daemon without a control "
                            "connection yet, or with drops, must not be restarted); broken "
                            "(2) and nothing running (3) keep their exit codes")
    options.add_common(p)
    args = p.parse_args(argv)
    cfg = options.load_config(args, "status", {})
    instance = args.instance
    installed = None
    if not args.no_rules and os.geteuid() == 0:
        managers: dict[str, object] = {}

        def installed(tag: str) -> list[str]:
            _, role, inst = tag.split(":", 2)
            c = dataclasses.replace(cfg, general=dataclasses.replace(cfg.general, instance=inst))
            if tag not in managers:
                managers[tag] = teardown.rule_manager(c, role)
            return managers[tag].installed()  # type: ignore[attr-defined]

    def look() -> tuple[int, str]:
        data = status.collect(cfg.general.state_dir, instance, installed=installed)
        if args.role:
            data["daemons"] = [d for d in data["daemons"] if d["role"] == args.role]
            if "installed" in data:
                data["installed"] = [i for i in data["installed"]
                                     if i["owner"].split(":")[1] == args.role]
        code, line = status.verdict(data)
        data["verdict"] = {"code": code, "line": line}
        if args.probe:
            return (status.HEALTHY if code == status.DEGRADED else code), line + "\n"
        if args.json:
            return code, status.render_json(data)
        return code, status.render_table(data, show_all=args.all) + line + "\n"

    if args.watch is None:
        code, text = look()
        sys.stdout.write(text)
        return code
    return watch(look, args.watch)


def _interval(text: str) -> float:
    try:
        seconds = float(text)
    except ValueError:
        seconds = 0.0
    if not 0.1 <= seconds <= 3600:
        raise argparse.ArgumentTypeError(f"must be seconds from 0.1 to 3600, got {text!r}")
    return seconds


def watch(look: Callable[[], tuple[int, str]], interval: float,
          out: Any = None, sleep: Callable[[float], None] = time.sleep,
          rounds: int | None = None) -> int:
    """Redraw `look()`'s text every `interval` s (a terminal gets the screen cleared first)
    until ^C; the exit code is the last verdict's."""
    out = out or sys.stdout
    clear = "\x1b[H\x1b[2J" if out.isatty() else ""
    code = status.NOTHING
    try:
        while rounds is None or rounds > 0:
            code, text = look()
            stamp = time.strftime("%H:%M:%S")
            out.write(f"{clear}every {interval:g} s, {stamp} (^C to stop)\n\n{text}")
            out.flush()
            rounds = None if rounds is None else rounds - 1
            if rounds != 0:
                sleep(interval)
    except KeyboardInterrupt:
        out.write("\n")
    except BrokenPipeError:  # `| head`: the reader has seen enough
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), out.fileno())
    return code


def role_status(args: argparse.Namespace, role: str) -> int:
    """`nfreplay-<role> status`: `nfreplay status --role <role>` with the same file options."""
    passthrough = ["--role", role]
    for flag in ("config", "instance", "state_dir"):
        if getattr(args, flag):
            passthrough += ["--" + flag.replace("_", "-"), getattr(args, flag)]
    return status_main(passthrough)
