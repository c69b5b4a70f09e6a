"""nfreplay: `status` of everything on this host, and `target up|down` for the target's route."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from nfreplay.cli import options
from nfreplay.cli.status import status_main
from nfreplay.cli.target import target_main

DESCRIPTION = """\
nfreplay copies live TCP traffic from an online server to a target server; the target's
replies are swallowed by nfreplay-assist. This command shows the state of the nfreplay
daemons on this host and manages the target host's route.

commands:
  status             daemons' counters, NFQUEUE state (/proc/net/netfilter/nfnetlink_queue)
                     and the rules/routes each instance installed
  target up|down     on the target host: route the client networks' replies via the
                     assistant (tagged; `down` removes only this instance's routes)
  doctor ROLE        check what online, assist or target needs on this host before `up`
  compare ONLINE_DIR TARGET_DIR
                     compare the target's responses with production's, from the
                     --record-responses recordings (exit 0 same, 1 differences, 2 bad input)

The online and assist roles have their own commands: nfreplay-online, nfreplay-assist."""

EXAMPLES = """\
examples:
  nfreplay status
  nfreplay status --json
  nfreplay target up --clients 198.18.1.0/24 --via 198.18.0.4
  nfreplay target down
  nfreplay doctor target
  nfreplay compare /var/lib/nfreplay/online /var/lib/nfreplay/target --html report.html
"""


def main(argv: Sequence[str]) -> int:
    if argv and argv[0] == "target":
        return target_main(argv[1:])
    if argv and argv[0] == "status":
        return status_main(argv[1:])
    if argv and argv[0] == "doctor":
        from nfreplay.cli.doctor import doctor_main

        return doctor_main(argv[1:])
    if argv and argv[0] == "compare":
        from nfreplay.cli.compare import compare_main

        return compare_main(argv[1:])
    p = argparse.ArgumentParser(prog="nfreplay", description=DESCRIPTION, epilog=EXAMPLES,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("command", choices=("status", "target", "doctor", "compare"),
                   help="status | target up|down | doctor ROLE | compare ONLINE_DIR TARGET_DIR")
    options.add_version(p)
    p.parse_args(argv[:1] if argv and argv[0] != "--version" else argv)
    return 2  # unreachable: argparse exits on a missing/unknown command


def entry() -> None:
    raise SystemExit(options.run_main(main))
