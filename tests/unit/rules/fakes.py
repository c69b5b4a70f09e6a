"""In-memory backends with the same contracts as the real ones, for unit tests.

Each fake keeps the state a kernel would keep and a `calls` log; `fail_on` makes the n-th call
of an operation raise, to script failures ("the second insert fails").
"""

from __future__ import annotations

from collections import Counter

from nfreplay.errors import HostError, RulesError
from nfreplay.rules.model import Link, PolicyRule, Route, Rule

__all__ = ["FakeRuleBackend", "FakeRouteBackend", "FakeSysctlBackend", "FakeLinkBackend"]


class _Failures:
    """Shared failure scripting: `fail_on[(op, n)] = message` fails the n-th (1-based) call of
    `op`; `fail_always[op] = message` fails every call."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, object]] = []
        self.fail_on: dict[tuple[str, int], str] = {}
        self.fail_always: dict[str, str] = {}
        self._count: Counter[str] = Counter()

    def _call(self, op: str, arg: object) -> None:
        self.calls.append((op, arg))
        self._count[op] += 1
        message = self.fail_on.get((op, self._count[op])) or self.fail_always.get(op)
        if message:
            raise RulesError(message)


class FakeRuleBackend(_Failures):
    """Chains as ordered lists of rules, keyed by (table, chain)."""

    def __init__(self, name: str = "nft", usable: bool = True) -> None:
        super().__init__()
        self.name = name
        self.usable = usable
        self.chains: dict[tuple[str, str], list[Rule]] = {}

    def probe(self) -> None:
        """HostError unless constructed usable."""
        if not self.usable:
            raise HostError(f"fake {self.name} backend unusable")

    def list_owned(self, owner_prefix: str) -> list[Rule]:
        """Rules whose owner starts with the prefix, in chain order."""
        self._call("list", owner_prefix)
        return [r for rules in self.chains.values() for r in rules
                if r.owner.startswith(owner_prefix)]

    def insert(self, rule: Rule, position: int = 1) -> None:
        """Insert at 1-based position; past the end + 1 is refused, as iptables does."""
        self._call("insert", rule)
        chain = self.chains.setdefault((rule.table, rule.chain), [])
        if not 1 <= position <= len(chain) + 1:
            raise RulesError(f"index of insertion too big: {position}")
        chain.insert(position - 1, rule)

    def delete(self, rule: Rule) -> None:
        """Remove the first copy; absent = success."""
        self._call("delete", rule)
        chain = self.chains.get((rule.table, rule.chain), [])
        if rule in chain:
            chain.remove(rule)

    def has_table(self, table: str) -> bool:
        """A table exists once something was inserted into it, until dropped."""
        return any(t == table for t, _ in self.chains)

    def drop_table_if_empty(self, table: str) -> bool:
        """Drop the table's chains if none holds a rule."""
        self._call("drop_table", table)
        keys = [k for k in self.chains if k[0] == table]
        if any(self.chains[k] for k in keys):
            return False
        for k in keys:
            del self.chains[k]
        return True

    def exists(self, rule: Rule) -> bool:
        """True if a copy is in its chain."""
        self._call("exists", rule)
        return rule in self.chains.get((rule.table, rule.chain), [])

    def chain(self, table: str, chain: str) -> list[Rule]:
        """Test helper: the rules of one chain, in order."""
        return list(self.chains.get((table, chain), []))


class FakeRouteBackend(_Failures):
    """A set of routes; a second route to the same (dst, table) is refused like the kernel."""

    def __init__(self) -> None:
        super().__init__()
        self.routes: list[Route] = []
        self.policy: list[PolicyRule] = []

    def add(self, route: Route) -> None:
        """Add, or RulesError('File exists')."""
        self._call("add", route)
        if any(r.dst == route.dst and r.table == route.table and r.metric == route.metric
               for r in self.routes):
            raise RulesError(f"{route.describe()}: File exists")
        self.routes.append(route)

    def delete(self, route: Route) -> None:
        """Remove; absent = success."""
        self._call("delete", route)
        if route in self.routes:
            self.routes.remove(route)

    def exists(self, route: Route) -> bool:
        """Exact match."""
        self._call("exists", route)
        return route in self.routes

    def list_owned(self, proto: int) -> list[Route]:
        """Routes with that protocol."""
        self._call("list", proto)
        return [r for r in self.routes if r.proto == proto]

    def add_policy(self, rule: PolicyRule) -> None:
        """Add, or RulesError('File exists')."""
        self._call("add_policy", rule)
        if rule in self.policy:
            raise RulesError(f"{rule.describe()}: File exists")
        self.policy.append(rule)

    def delete_policy(self, rule: PolicyRule) -> None:
        """Remove; absent = success."""
        self._call("delete_policy", rule)
        if rule in self.policy:
            self.policy.remove(rule)

    def policy_exists(self, rule: PolicyRule) -> bool:
        """Exact match."""
        self._call("policy_exists", rule)
        return rule in self.policy


class FakeSysctlBackend(_Failures):
    """A dict of key → value."""

    def __init__(self, values: dict[str, str] | None = None) -> None:
        super().__init__()
        self.values: dict[str, str] = dict(values or {})

    def read(self, key: str) -> str:
        """The value, or RulesError if the key is unknown."""
        self._call("read", key)
        if key not in self.values:
            raise RulesError(f"cannot read sysctl {key}: No such file or directory")
        return self.values[key]

    def write(self, key: str, value: str) -> None:
        """Set the value."""
        self._call("write", (key, value))
        self.values[key] = value


class FakeLinkBackend(_Failures):
    """Devices by name: (kind, owner)."""

    def __init__(self) -> None:
        super().__init__()
        self.devices: dict[str, tuple[str, str]] = {}

    def add(self, link: Link) -> None:
        self._call("add", link)
        if link.name in self.devices:
            raise RulesError(f"ip link add {link.name}: File exists")
        self.devices[link.name] = (link.kind, link.owner)

    def delete(self, link: Link) -> None:
        self._call("delete", link)
        self.devices.pop(link.name, None)

    def exists(self, link: Link) -> bool:
        return self.devices.get(link.name) == (link.kind, link.owner)

    def list_owned(self, owner: str) -> list[str]:
        return [name for name, (_, o) in self.devices.items() if o == owner]
