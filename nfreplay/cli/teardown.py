"""Removing what an instance installed (`down`), from its journal, and saying what went."""

from __future__ import annotations

import sys
from typing import Any

from nfreplay import config as config_mod
from nfreplay import stats
from nfreplay.errors import NfreplayError

def report_teardown(problems: list[str], what: str) -> int:
    """Print teardown problems (one line each); exit code 0 only when teardown was complete."""
    for p in problems:
        print(f"{what}: teardown incomplete: {p}", file=sys.stderr)
    return 1 if problems else 0


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
