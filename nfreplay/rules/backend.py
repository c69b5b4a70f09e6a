"""The contracts the rule manager drives. Real implementations: `iptables.NftBackend`,
`iptables.XtablesBackend`, `routes.RtnetlinkRouteBackend`, `sysctl.ProcSysctlBackend`;
in-memory ones for unit tests live in `fakes`.

Shared rules of the contract:
- Removing something that is already gone is success (teardown after a crash must converge).
- Failures raise `RulesError` (or `HostError` from `probe`) with one line for an operator.
"""

from __future__ import annotations

from typing import Protocol

from nfreplay.rules.model import Link, PolicyRule, Route, Rule

__all__ = ["RuleBackend", "RouteBackend", "SysctlBackend", "LinkBackend"]


class RuleBackend(Protocol):
    """One iptables backend (the kernel facility that holds the rules)."""

    #: "nft" or "legacy"; recorded in the journal next to every rule installed.
    name: str

    def probe(self) -> None:
        """Raise HostError (one line) if this backend cannot work on this host.
        Must not change the host (no tables created)."""

    def list_owned(self, owner_prefix: str) -> list[Rule]:
        """Every rule, in any table, whose owner comment starts with `owner_prefix`
        ("nfreplay:" lists all instances). Finds rules left by a killed process."""

    def insert(self, rule: Rule, position: int = 1) -> None:
        """Insert `rule` at 1-based `position` in its chain (`iptables -I chain position`)."""

    def delete(self, rule: Rule) -> None:
        """Delete one copy of `rule`; already gone = success."""

    def has_table(self, table: str) -> bool:
        """Whether `table` exists now (so `up` knows whether it is the one creating it)."""
        ...

    def drop_table_if_empty(self, table: str) -> bool:
        """Remove `table` if it holds no rule and no user chain; False if it stays."""
        ...

    def exists(self, rule: Rule) -> bool:
        """True if `rule` is present in its chain."""


class RouteBackend(Protocol):
    """Routes in the kernel's FIB, identified by (dst, table, proto)."""

    def add(self, route: Route) -> None:
        """Add `route`; RulesError if the kernel refuses (e.g. an existing route)."""

    def delete(self, route: Route) -> None:
        """Delete `route` (matching its proto, so an operator's route survives);
        already gone = success."""

    def exists(self, route: Route) -> bool:
        """True if a route to `route.dst` with `route.proto` is in `route.table`."""

    def list_owned(self, proto: int) -> list[Route]:
        """Every IPv4 'via' or blackhole route with protocol `proto`, in any table."""

    def add_policy(self, rule: PolicyRule) -> None:
        """Add the policy rule; RulesError if the kernel refuses."""

    def delete_policy(self, rule: PolicyRule) -> None:
        """Delete the policy rule (matching its proto); already gone = success."""

    def policy_exists(self, rule: PolicyRule) -> bool:
        """True if exactly this policy rule is installed."""


class SysctlBackend(Protocol):
    """Kernel parameters by dotted key (`net.ipv4.ip_forward`)."""

    def read(self, key: str) -> str:
        """The current value, whitespace-normalised; RulesError if unreadable."""

    def write(self, key: str, value: str) -> None:
        """Set `key` to `value`; RulesError on failure."""


class LinkBackend(Protocol):
    """Network devices nfreplay creates, found again by their alias (the owner tag)."""

    def add(self, link: Link) -> None:
        """Create the device, set its alias to `link.owner` and bring it up."""

    def delete(self, link: Link) -> None:
        """Delete the device; already gone = success."""

    def exists(self, link: Link) -> bool:
        """True if a device of that name, kind and owner is there."""

    def list_owned(self, owner: str) -> list[str]:
        """The names of the devices whose alias is exactly `owner`."""
