"""The rule manager: what each role needs from the host (iptables rules, routes, sysctls),
installed and removed safely.

Module map (one duty each):
    model      pure description: Rule, Route, Link, SysctlCheck, Plan and the plan builders
    savefile   iptables-save output → Rule values (one parser for both backends)
    command    the single choke point that runs external programs
    backend    the contracts: RuleBackend, RouteBackend, SysctlBackend
    iptables   NftBackend (iptables-nft), XtablesBackend (python-iptables), select_backend
    routes     RtnetlinkRouteBackend (pyroute2, imported when first used)
    links      IpLinkBackend: devices (the target's tunnel end) through `ip link`
    sysctl     ProcSysctlBackend (/proc/sys)
    journal    the on-disk record of what an owner installed
    manager    RuleManager: leftovers → checks → record+install → verify; teardown
    fakes      in-memory backends for unit tests

Typical use (assist role)::

    plan = assist_plan("lab1", "198.18.0.3", 80, ["198.18.1.0/24"], "assistant", queue=0)
    rules = select_backend("auto")
    manager = RuleManager(plan.owner, Journal("/run/nfreplay/assist-lab1.json"), rules,
                          RtnetlinkRouteBackend(), ProcSysctlBackend(),
                          sweep=sweep_backends(rules))
    manager.up(plan)      # ... serve the queue ...
    problems = manager.down()   # before unbinding the queue
"""

from nfreplay.rules.backend import RouteBackend, RuleBackend, SysctlBackend
from nfreplay.rules.iptables import NftBackend, XtablesBackend, select_backend, sweep_backends
from nfreplay.rules.journal import Journal
from nfreplay.rules.manager import RuleManager
from nfreplay.rules.model import (
    OWNER_PREFIX,
    RTPROT_NFREPLAY,
    Plan,
    PolicyRule,
    Route,
    Rule,
    SysctlCheck,
    assist_plan,
    owner_tag,
    target_plan,
)
from nfreplay.rules.routes import RtnetlinkRouteBackend
from nfreplay.rules.sysctl import ProcSysctlBackend

__all__ = [
    "OWNER_PREFIX",
    "RTPROT_NFREPLAY",
    "Plan",
    "PolicyRule",
    "Route",
    "Rule",
    "SysctlCheck",
    "assist_plan",
    "owner_tag",
    "target_plan",
    "RuleBackend",
    "RouteBackend",
    "SysctlBackend",
    "NftBackend",
    "XtablesBackend",
    "select_backend",
    "sweep_backends",
    "RtnetlinkRouteBackend",
    "ProcSysctlBackend",
    "Journal",
    "RuleManager",
]
