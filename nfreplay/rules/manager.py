"""The rule manager: brings one owner's plan up, verifies it, and tears it down.

Order of `up`: remove leftovers → check sysctls → (record, install) each item → verify; any
failure rolls back what was installed. Order of `down`: undo journal entries newest first, each
in its own try, then sweep rules still tagged with the owner. The journal goes away only when
the teardown was complete, so a failed `down` can be retried and still knows what is left.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from functools import partial
from typing import ContextManager

from nfreplay.errors import HostError, NfreplayError, RulesError
from nfreplay.rules.backend import LinkBackend, RouteBackend, RuleBackend, SysctlBackend
from nfreplay.rules.journal import (
    Entry,
    Journal,
    LinkEntry,
    PolicyEntry,
    RouteEntry,
    RuleEntry,
    SysctlEntry,
    TableEntry,
)
from nfreplay.rules.model import OWNER_PREFIX, Link, Plan, Rule, SysctlCheck

__all__ = ["RuleManager"]


def _line(exc: BaseException) -> str:
    """One line for an operator: our errors as they are, anything else with its type."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    if isinstance(exc, NfreplayError):
        return text or type(exc).__name__
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _summary(problems: Sequence[str]) -> str:
    more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
    return f"{problems[0]}{more}"


class RuleManager:
    """Installs and removes what one owner (`nfreplay:<role>:<instance>`) needs.

    `rules` is the backend new rules go to; `sweep` are the other usable rule backends
    (`iptables.sweep_backends`), searched for this owner's leftovers because a previous run
    may have used another backend and both rule sets are live at once.

    Ordering the caller must keep: call `down()` *before* unbinding the NFQUEUE queue. While
    the rule exists and nothing is bound, the kernel drops the replies (no --queue-bypass);
    unbinding first would leave a window where nothing reports them, and removing the rule
    first means the verdict loop sees every reply until the rule is gone.
    """

    def __init__(self, owner: str, journal: Journal, rules: RuleBackend, routes: RouteBackend,
                 sysctl: SysctlBackend, *, sweep: Sequence[RuleBackend] = (),
                 links: LinkBackend | None = None,
                 lock: ContextManager[object] | None = None) -> None:
        self.owner = owner
        # Held around `up` and `down`: other owners in the same network namespace change the
        # same tables at the same time (rules.netnslock). Reentrant: `up` runs `down` first.
        self.lock: ContextManager[object] = lock or contextlib.nullcontext()
        self.journal = journal
        self.rules = rules
        self.routes = routes
        self.sysctl = sysctl
        self.links = links
        self._backends: dict[str, RuleBackend] = {rules.name: rules}
        for backend in sweep:
            self._backends.setdefault(backend.name, backend)

    # -- up ----------------------------------------------------------------------------------
    def up(self, plan: Plan) -> None:
        """Make the host match `plan`, exactly once.

        1. Remove leftovers: everything the journal lists plus every rule tagged with this
           owner in every backend (what `down` removes). Running `up` twice therefore leaves
           one copy of each rule.
        2. Check sysctls; a wrong value without `fix` raises RulesError before anything new is
           installed. (After step 1, so a value a crashed run changed is judged restored.)
        3. Record each item in the journal, then install it: sysctl fixes, rules, routes, then the
           policy rules that select the routes' table (so it is complete when they go live).
           Rules are inserted at position 1 in reverse plan order, so they end up first in
           their chain, in plan order, ahead of any operator rule that could shadow them.
           In that order the NFQUEUE rules go in before the passlist ACCEPTs: for a moment a
           passlisted reply is queued (dropped), never the reverse (a reply leaking).
        4. Verify every rule, route and sysctl. Any failure in 3-4 rolls everything back and
           raises RulesError.
        """
        if plan.owner != self.owner:
            raise ValueError(f"plan of {plan.owner!r} given to the manager of {self.owner!r}")
        with self.lock:
            self._up(plan)

    def _up(self, plan: Plan) -> None:
        leftovers = self.down()
        if leftovers:
            raise RulesError(f"{self.owner}: cannot remove leftovers: {_summary(leftovers)}")
        if plan.links and self.links is None:
            raise ValueError("a plan with devices needs a LinkBackend")
        fixes = self._check_sysctls(plan.sysctls, plan.links)
        for route in plan.routes:
            if self.routes.exists(route):
                # Our journal was just emptied, so this route is someone else's record: another
                # instance, or a journal that was lost. Routes carry no owner beyond the proto.
                raise RulesError(
                    f"{route.describe()}: already present and not in {self.journal.path}: "
                    f"another nfreplay instance owns it, or its journal was lost (remove it "
                    f"with: ip route del {route.dst} proto {route.proto} table {route.table})")
        try:
            for link in plan.links:
                assert self.links is not None
                self.journal.append(LinkEntry(link))
                self.links.add(link)
            for check, old in fixes:
                self.journal.append(SysctlEntry(check.key, old, check.want))
                self.sysctl.write(check.key, check.want)
            tables = dict.fromkeys(rule.table for rule in plan.rules)
            shared = ({r.table for r in self.rules.list_owned(OWNER_PREFIX)}
                      if tables else set())
            for table in tables:
                # Journaled before its rules, so teardown drops it after them (only once it is
                # empty). Also a table that holds another owner's rules, which means an
                # nfreplay run made it: the tunnel end and a colocated assist share `raw`, in
                # a pod they start and stop in any order, and whichever leaves last drops it.
                if not self.rules.has_table(table) or table in shared:
                    self.journal.append(TableEntry(self.rules.name, table))
            for rule in reversed(plan.rules):
                self.journal.append(RuleEntry(self.rules.name, rule))
                self.rules.insert(rule, 1)
            for route in plan.routes:
                self.journal.append(RouteEntry(route))
                self.routes.add(route)
            for policy in plan.policy:
                self.journal.append(PolicyEntry(policy))
                self.routes.add_policy(policy)
            self._verify(plan)
        except BaseException as exc:
            problems = self.down()
            if not isinstance(exc, (NfreplayError, OSError)):
                raise  # a bug or Ctrl-C: rolled back, keep the original traceback
            if problems:
                raise RulesError(f"{self.owner}: up failed: {_line(exc)}; rollback incomplete: "
                                 f"{_summary(problems)}") from exc
            raise RulesError(f"{self.owner}: up failed, rolled back: {_line(exc)}") from exc

    def _check_sysctls(self, checks: Sequence[SysctlCheck], links: Sequence[Link] = ()
                       ) -> list[tuple[SysctlCheck, str]]:
        """The checks that need a fix, with the current value; raise if one may not be fixed.
        A setting of a device the plan creates is a fix with nothing to restore ("")."""
        fixes = []
        ours = tuple(f"net.ipv4.conf.{link.name}." for link in links)
        for check in checks:
            if ours and check.key.startswith(ours):
                fixes.append((check, ""))
                continue
            current = self.sysctl.read(check.key)
            if current == check.want:
                continue
            if not check.fix:
                hint = f"; {check.hint}" if check.hint else ""
                raise HostError(f"{check.key} is {current}, nfreplay needs {check.want}{hint}")
            fixes.append((check, current))
        return fixes

    def _verify(self, plan: Plan) -> None:
        missing = [r.describe() for r in plan.rules if not self.rules.exists(r)]
        missing += [t.describe() for t in plan.routes if not self.routes.exists(t)]
        missing += [q.describe() for q in plan.policy if not self.routes.policy_exists(q)]
        missing += [k.describe() for k in plan.links
                    if self.links is not None and not self.links.exists(k)]
        for check in plan.sysctls:
            value = self.sysctl.read(check.key)
            if value != check.want:
                missing.append(f"{check.key} is {value}, not {check.want}")
        if missing:
            raise RulesError(f"not in place after install: {_summary(missing)}")

    # -- down --------------------------------------------------------------------------------
    def down(self) -> list[str]:
        """Remove everything this owner installed; return one line per problem (empty list =
        complete teardown).

        Works from the journal alone, so a fresh process can clean up after `kill -9`:
        entries are undone newest first (routes, rules, then sysctls restored to their old
        value), each in its own try. Then every rule still tagged exactly with this owner is
        deleted from every backend, which also cleans rules when the journal was lost. The
        journal file is removed only when nothing went wrong; otherwise it is rewritten with
        the entries that could not be undone, for a retry.
        """
        with self.lock:
            return self._down()

    def _down(self) -> list[str]:
        problems: list[str] = []
        entries: list[Entry] | None
        try:
            entries = self.journal.load()
        except RulesError as exc:  # corrupt: keep the file, still sweep the tagged rules
            problems.append(_line(exc))
            entries = None
        left: list[Entry] = []
        failed: set[tuple[str, Rule]] = set()
        for entry in reversed(entries or []):
            try:
                self._undo(entry)
            except Exception as exc:  # each step in its own try: one failure stops nothing
                problems.append(f"{entry.describe()}: {_line(exc)}")
                left.insert(0, entry)
                if isinstance(entry, RuleEntry):
                    failed.add((entry.backend, entry.rule))
        problems += self._sweep(failed)
        if entries is not None:
            try:
                if problems:
                    self.journal.save(left)
                else:
                    self.journal.clear()
            except Exception as exc:
                problems.append(_line(exc))
        return problems

    # Kept as a name for step 1 of `up`; leftovers are by definition what `down` removes.
    cleanup_leftovers = down

    def _undo(self, entry: Entry) -> None:
        if isinstance(entry, RuleEntry):
            backend = self._backends.get(entry.backend)
            if backend is None:
                raise RulesError(f"the {entry.backend} backend is not usable on this host")
            backend.delete(entry.rule)
        elif isinstance(entry, RouteEntry):
            self.routes.delete(entry.route)
        elif isinstance(entry, PolicyEntry):
            self.routes.delete_policy(entry.rule)
        elif isinstance(entry, TableEntry):
            backend = self._backends.get(entry.backend)
            if backend is not None:
                backend.drop_table_if_empty(entry.table)
        elif isinstance(entry, LinkEntry):
            if self.links is None:
                raise RulesError("a device to delete, and no way to: run `down` as the role "
                                 "that created it")
            self.links.delete(entry.link)
        elif entry.old:  # "": a setting of a device of ours, gone with it
            self.sysctl.write(entry.key, entry.old)

    def _sweep(self, skip: set[tuple[str, Rule]]) -> list[str]:
        problems = []
        if self.links is not None:
            names: list[str] = []
            try:
                names = self.links.list_owned(self.owner)
            except Exception as exc:
                problems.append(f"cannot list the devices of {self.owner}: {_line(exc)}")
            for name in names:
                try:
                    self.links.delete(Link(name, "vxlan", (), self.owner))
                except Exception as exc:
                    problems.append(f"ip link del {name}: {_line(exc)}")
        for backend in self._backends.values():
            try:
                owned = [r for r in backend.list_owned(self.owner) if r.owner == self.owner]
            except Exception as exc:
                problems.append(f"[{backend.name}] cannot list rules of {self.owner}: {_line(exc)}")
                continue
            for rule in owned:
                if (backend.name, rule) in skip:
                    continue  # already reported above
                try:
                    backend.delete(rule)
                except Exception as exc:
                    problems.append(f"[{backend.name}] {rule.describe()}: {_line(exc)}")
        return problems

    # -- repair (the target's resident mode) --------------------------------------------------
    def adopt(self, plan: Plan) -> bool:
        """Take over what a previous run of the same plan left installed, instead of `up`.

        True when the journal lists exactly the plan's routes and policy rules (a routes-only
        plan: the target's) and nothing else; what the kernel lost is then put back by
        `repair`. `up` would first remove everything, and between that removal and the new
        install the target's replies to the clients would follow its default route: a restart
        of the resident watcher must never open that window.
        """
        if plan.owner != self.owner or plan.rules or plan.sysctls:
            return False
        try:
            entries = self.journal.load()
        except RulesError:
            return False
        wanted = [RouteEntry(r) for r in plan.routes] + [PolicyEntry(p) for p in plan.policy]
        return bool(entries) and entries == wanted

    def repair(self, plan: Plan) -> tuple[list[str], list[str]]:
        """Put back the plan's routes and policy rules the kernel no longer has (it deletes a
        route whose interface went down), in plan order: blackhole routes before the routes
        via the assistant, routes before the rules that select their table.

        Returns (restored, missing): one line per item put back, and one per item still
        missing with the reason the kernel gave (e.g. the link is still down). The items must
        already be journaled (`up` or `adopt`), so `down` removes what this adds.
        """
        restored: list[str] = []
        missing: list[str] = []
        items: list[tuple[str, Callable[[], bool], Callable[[], None]]] = []
        for route in plan.routes:
            items.append((route.describe(), partial(self.routes.exists, route),
                          partial(self.routes.add, route)))
        for policy in plan.policy:
            items.append((policy.describe(), partial(self.routes.policy_exists, policy),
                          partial(self.routes.add_policy, policy)))
        for what, present, add in items:
            try:
                if present():
                    continue
                add()
                restored.append(what)
            except (NfreplayError, OSError) as exc:
                reason = _line(exc)  # the backends' errors already name the item
                missing.append(reason if reason.startswith(what) else f"{what}: {reason}")
        return restored, missing

    # -- status ------------------------------------------------------------------------------
    def installed(self) -> list[str]:
        """One line per item this owner has on the live system: tagged rules found in every
        backend, plus the journal's routes and policy rules (prefixed "MISSING: " when the
        kernel no longer has them) and sysctl changes still in effect (routes and sysctls
        carry no owner tag, so the journal says which are ours)."""
        lines = []
        for backend in self._backends.values():
            lines += [f"[{backend.name}] {r.describe()}"
                      for r in backend.list_owned(self.owner) if r.owner == self.owner]
        for entry in self.journal.load():
            if isinstance(entry, (RouteEntry, PolicyEntry)):
                present = (self.routes.exists(entry.route) if isinstance(entry, RouteEntry)
                           else self.routes.policy_exists(entry.rule))
                # The kernel deletes a route whose interface went down: say so.
                lines.append(entry.describe() if present else f"MISSING: {entry.describe()}")
            elif isinstance(entry, LinkEntry) and self.links is not None:
                lines.append(entry.describe() if self.links.exists(entry.link)
                             else f"MISSING: {entry.describe()}")
            elif isinstance(entry, SysctlEntry) and entry.old \
                    and self.sysctl.read(entry.key) == entry.new:
                lines.append(entry.describe())
        return lines
