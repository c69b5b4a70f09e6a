"""RuleManager against the in-memory backends: the fakes keep state like the kernel does, so
a "crash" is simply a new manager over the same fakes and journal file."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from nfreplay.errors import HostError, RulesError
from tests.unit.rules.fakes import (
    FakeLinkBackend, FakeRouteBackend, FakeRuleBackend, FakeSysctlBackend,
)  # fmt: skip
from nfreplay.rules.journal import (
    Journal, LinkEntry, PolicyEntry, RouteEntry, RuleEntry, SysctlEntry,
)  # fmt: skip
from nfreplay.rules.manager import RuleManager
from nfreplay.rules.model import (
    TARGET_TABLE, Plan, Route, Rule, Tunnel, assist_plan, target_plan,
)  # fmt: skip

OWNER = "nfreplay:assist:lab1"
OPERATOR = Rule("raw", "PREROUTING", ("-s", "198.18.9.9"), ("ACCEPT",), "operator")


class Host:
    """The kernel state one test works on, and a way to start a fresh 'process'."""

    def __init__(self, tmp_path: Path, ip_forward: str = "1") -> None:
        self.journal_path = tmp_path / "run" / "assist-lab1.json"
        self.nft = FakeRuleBackend("nft")
        self.legacy = FakeRuleBackend("legacy")
        self.routes = FakeRouteBackend()
        self.sysctl = FakeSysctlBackend({"net.ipv4.ip_forward": ip_forward})
        self.nft.insert(OPERATOR)  # an operator's rule that must survive and come after ours

    def manager(self, owner: str = OWNER) -> RuleManager:
        return RuleManager(owner, Journal(self.journal_path), self.nft, self.routes,
                           self.sysctl, sweep=[self.legacy])

    def chain(self, chain: str = "PREROUTING") -> list[Rule]:
        return self.nft.chain("raw", chain)


def plan(fix: bool = True, passlist: tuple[str, ...] = ("198.18.1.7",)) -> Plan:
    return assist_plan("lab1", "198.18.0.3", 80, ["198.18.1.0/24", "198.18.2.0/24"],
                       "assistant", 0, passlist=passlist, fix_ip_forward=fix)


@pytest.fixture
def host(tmp_path: Path) -> Host:
    return Host(tmp_path)


def test_up_installs_in_plan_order_ahead_of_operator_rules_and_down_undoes(host: Host) -> None:
    p = plan()
    host.manager().up(p)
    assert host.chain() == [*p.rules, OPERATOR]
    assert host.sysctl.values["net.ipv4.ip_forward"] == "0"
    entries = Journal(host.journal_path).load()
    assert entries[0] == SysctlEntry("net.ipv4.ip_forward", "1", "0")
    assert [e.rule for e in entries[1:] if isinstance(e, RuleEntry)] == list(reversed(p.rules))

    assert host.manager().down() == []
    assert host.chain() == [OPERATOR]
    assert host.sysctl.values["net.ipv4.ip_forward"] == "1"
    assert not host.journal_path.exists()


def test_up_twice_leaves_one_copy(host: Host) -> None:
    p = plan()
    host.manager().up(p)
    host.manager().up(p)
    assert host.chain() == [*p.rules, OPERATOR]
    # The second up restored ip_forward from the journal, then fixed it again: the
    # recorded old value is still the operator's, not ours.
    assert Journal(host.journal_path).load()[0] == SysctlEntry("net.ipv4.ip_forward", "1", "0")
    assert host.manager().down() == []
    assert host.sysctl.values["net.ipv4.ip_forward"] == "1"


def test_leftovers_of_a_crashed_process_are_removed_by_the_next_up(host: Host) -> None:
    p = plan()
    host.manager().up(p)  # ... and the process is killed: journal and rules stay
    # A crash between "record" and "install": the journal lists a rule that is not there.
    ghost = Rule("raw", "PREROUTING", ("-s", "198.18.0.99"), ("DROP",), OWNER)
    Journal(host.journal_path).append(RuleEntry("nft", ghost))
    # A rule of ours left in the other backend by an older run with --backend legacy.
    host.legacy.insert(p.rules[-1])
    host.manager().up(p)
    assert host.chain() == [*p.rules, OPERATOR]
    assert host.legacy.chain("raw", "PREROUTING") == []
    assert host.manager().down() == []
    assert host.chain() == [OPERATOR]


def test_failure_mid_install_rolls_back(host: Host) -> None:
    host.nft.fail_on[("insert", 3)] = "iptables: boom"  # call 1 was the operator's rule
    with pytest.raises(RulesError, match="up failed, rolled back: iptables: boom"):
        host.manager().up(plan())
    assert host.chain() == [OPERATOR]
    assert host.sysctl.values["net.ipv4.ip_forward"] == "1"
    assert not host.journal_path.exists()


def test_failed_verification_rolls_back(host: Host, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(host.nft, "exists", lambda rule: False)
    with pytest.raises(RulesError, match="not in place after install"):
        host.manager().up(plan())
    assert host.chain() == [OPERATOR]
    assert not host.journal_path.exists()


def test_interrupt_mid_install_rolls_back_and_propagates(host: Host,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    real_insert = host.nft.insert
    calls = []

    def insert(rule: Rule, position: int = 1) -> None:
        calls.append(rule)
        if len(calls) == 2:
            raise KeyboardInterrupt
        real_insert(rule, position)

    monkeypatch.setattr(host.nft, "insert", insert)
    with pytest.raises(KeyboardInterrupt):
        host.manager().up(plan())
    assert host.chain() == [OPERATOR]
    assert host.sysctl.values["net.ipv4.ip_forward"] == "1"


def test_sysctl_check_without_fix_changes_nothing(host: Host) -> None:
    with pytest.raises(HostError) as err:  # a refusal, not a failure to install
        host.manager().up(plan(fix=False))
    message = str(err.value)
    assert message.startswith("net.ipv4.ip_forward is 1, nfreplay needs 0; ")
    assert "fix_ip_forward" in message and "\n" not in message
    assert host.chain() == [OPERATOR]
    assert [c for c in host.nft.calls if c[0] == "insert"] == [("insert", OPERATOR)]
    assert host.sysctl.values["net.ipv4.ip_forward"] == "1"
    assert not host.journal_path.exists()


def test_sysctl_already_right_is_not_recorded(tmp_path: Path) -> None:
    host = Host(tmp_path, ip_forward="0")
    host.manager().up(plan(fix=False))
    assert not any(isinstance(e, SysctlEntry) for e in Journal(host.journal_path).load())
    assert host.manager().down() == []
    assert host.sysctl.values["net.ipv4.ip_forward"] == "0"


def test_down_without_journal_still_sweeps_tagged_rules(host: Host) -> None:
    p = plan()
    host.manager().up(p)
    other = Rule("raw", "PREROUTING", ("-s", "198.18.0.5"), ("DROP",), "nfreplay:assist:lab10")
    host.nft.insert(other)  # another instance whose tag starts with ours: must survive
    host.journal_path.unlink()
    assert host.manager().down() == []
    assert host.chain() == [other, OPERATOR]


def test_down_reports_problems_and_keeps_the_journal(host: Host) -> None:
    p = plan()
    host.manager().up(p)
    host.nft.fail_always["delete"] = "iptables: Resource temporarily unavailable"
    problems = host.manager().down()
    assert problems and all("\n" not in line for line in problems)
    assert any("Resource temporarily unavailable" in line for line in problems)
    # every failing rule is reported once, not again by the sweep
    assert len(problems) == len(p.rules)
    # the other steps still ran: ip_forward restored
    assert host.sysctl.values["net.ipv4.ip_forward"] == "1"
    left = Journal(host.journal_path).load()
    assert all(isinstance(e, RuleEntry) for e in left) and len(left) == len(p.rules)
    # the retry, once deleting works again, completes and removes the journal
    host.nft.fail_always.clear()
    assert host.manager().down() == []
    assert host.chain() == [OPERATOR]
    assert not host.journal_path.exists()


def test_up_refuses_when_leftovers_cannot_be_removed(host: Host) -> None:
    host.manager().up(plan())
    host.nft.fail_always["delete"] = "iptables: nope"
    with pytest.raises(RulesError, match="cannot remove leftovers"):
        host.manager().up(plan())


def test_journal_entry_for_an_unusable_backend_is_a_problem(tmp_path: Path) -> None:
    host = Host(tmp_path)
    rule = plan().rules[0]
    Journal(host.journal_path).append(RuleEntry("iptables-from-mars", rule))
    problems = host.manager().down()
    assert problems == [f"[iptables-from-mars] {rule.describe()}: "
                        "the iptables-from-mars backend is not usable on this host"]
    assert host.journal_path.exists()


def test_corrupt_journal_still_sweeps_and_is_kept(host: Host) -> None:
    host.manager().up(plan())
    host.journal_path.write_text("{not json")
    problems = host.manager().down()
    assert len(problems) == 1 and str(host.journal_path) in problems[0]
    assert host.chain() == [OPERATOR]
    assert host.journal_path.read_text() == "{not json"
    with pytest.raises(RulesError, match="corrupt journal"):
        host.manager().up(plan())


def test_target_routes_up_down(host: Host) -> None:
    manager = host.manager("nfreplay:target:lab1")
    p = target_plan("lab1", ["198.18.1.0/24", "198.18.2.0/24"], "198.18.0.2")
    manager.up(p)
    manager.up(p)
    assert host.routes.routes == list(p.routes) and host.routes.policy == list(p.policy)
    assert [e for e in Journal(host.journal_path).load()] == [
        *(RouteEntry(r) for r in p.routes), *(PolicyEntry(q) for q in p.policy)]
    assert manager.installed() == [r.describe() for r in (*p.routes, *p.policy)]
    # The kernel drops the route via the assistant when its link goes down: status says so.
    host.routes.routes.remove(p.routes[1])
    assert f"MISSING: {p.routes[1].describe()}" in manager.installed()
    host.routes.calls.clear()
    assert manager.down() == []
    assert host.routes.routes == [] and host.routes.policy == []
    # Policy rules go first: from then on replies follow the main table, as before `up`.
    deletes = [c for c in host.routes.calls if c[0].startswith("delete")]
    assert [c[0] for c in deletes[:2]] == ["delete_policy", "delete_policy"]


def test_target_repair_puts_back_what_the_kernel_dropped_in_plan_order(host: Host) -> None:
    manager = host.manager("nfreplay:target:lab1")
    p = target_plan("lab1", ["198.18.1.0/24", "198.18.2.0/24"], "198.18.0.2")
    manager.up(p)
    assert manager.repair(p) == ([], [])
    # Link down: the kernel drops both routes via the assistant; while it is down they
    # cannot be added back, and repair says why.
    via = [r for r in p.routes if r.via]
    for r in via:
        host.routes.routes.remove(r)
    host.routes.fail_always["add"] = "Network is unreachable"
    restored, missing = manager.repair(p)
    assert restored == []
    assert missing == [f"{r.describe()}: Network is unreachable" for r in via]
    # Link up again. A flushed table and a deleted rule come back too, blackhole first.
    del host.routes.fail_always["add"]
    host.routes.routes.remove(p.routes[0])
    host.routes.policy.remove(p.policy[2])
    host.routes.calls.clear()
    restored, missing = manager.repair(p)
    assert missing == []
    assert restored == [p.routes[0].describe(), *(r.describe() for r in via),
                        p.policy[2].describe()]
    assert [c[1] for c in host.routes.calls if c[0].startswith("add")] == [
        p.routes[0], *via, p.policy[2]]
    assert sorted(map(str, host.routes.routes)) == sorted(map(str, p.routes))
    assert sorted(map(str, host.routes.policy)) == sorted(map(str, p.policy))
    assert manager.down() == [] and host.routes.routes == [] and host.routes.policy == []


def test_target_adopts_what_a_previous_run_of_the_same_plan_left(host: Host) -> None:
    p = target_plan("lab1", ["198.18.1.0/24"], "198.18.0.2")
    host.manager("nfreplay:target:lab1").up(p)  # then killed: the routes stay
    fresh = host.manager("nfreplay:target:lab1")
    host.routes.calls.clear()
    assert fresh.adopt(p)
    # Nothing removed, not even for a moment (replies would follow the default route).
    assert not [c for c in host.routes.calls if c[0].startswith("delete")]
    # Another plan (other assistant), or no journal: not adopted, `up` replaces it.
    assert not fresh.adopt(target_plan("lab1", ["198.18.1.0/24"], "198.18.0.9"))
    assert fresh.down() == []
    assert not fresh.adopt(p)
    assert not host.manager().adopt(plan())  # rules and sysctls: never adopted


def test_route_failure_rolls_back_rules_and_routes(host: Host) -> None:
    p = Plan(owner=OWNER, rules=plan().rules,
             routes=(Route("198.18.1.0/24", "198.18.0.2"), Route("198.18.2.0/24", "198.18.0.2")))
    host.routes.fail_on[("add", 2)] = "Network is unreachable"
    with pytest.raises(RulesError, match="Network is unreachable"):
        host.manager().up(p)
    assert host.routes.routes == [] and host.chain() == [OPERATOR]


def test_foreign_route_to_the_same_prefix_is_refused_not_taken(host: Host) -> None:
    route = Route("198.18.1.0/24", "198.18.0.2", table=TARGET_TABLE)
    host.routes.add(route)  # someone else's (not in our journal)
    with pytest.raises(RulesError, match="already present"):
        host.manager("nfreplay:target:lab1").up(
            target_plan("lab1", ["198.18.1.0/24"], "198.18.0.2"))
    assert host.routes.routes == [route]


def test_installed_lists_live_rules_and_journal_items(host: Host) -> None:
    p = plan()
    manager = host.manager()
    assert manager.installed() == []
    manager.up(p)
    lines = manager.installed()
    assert lines == [f"[nft] {r.describe()}" for r in p.rules] + [
        "sysctl net.ipv4.ip_forward=0 (was 1)"]
    host.legacy.insert(p.rules[0])
    assert f"[legacy] {p.rules[0].describe()}" in manager.installed()


def test_plan_of_another_owner_is_a_programming_error(host: Host) -> None:
    with pytest.raises(ValueError):
        host.manager("nfreplay:assist:other").up(plan())


def test_table_created_by_up_is_dropped_by_down_and_an_existing_one_kept(tmp_path) -> None:
    from tests.unit.rules.fakes import FakeRouteBackend, FakeRuleBackend, FakeSysctlBackend
    from nfreplay.rules.journal import Journal
    from nfreplay.rules.manager import RuleManager
    from nfreplay.rules.model import Rule, assist_plan

    plan = assist_plan("t1", "198.18.0.3", 80, ["198.18.1.0/24"], "colocated", 0)
    rules = FakeRuleBackend()
    m = RuleManager(plan.owner, Journal(tmp_path / "j.json"), rules, FakeRouteBackend(),
                    FakeSysctlBackend({"net.ipv4.ip_forward": "0"}))
    m.up(plan)
    assert rules.has_table("raw")
    assert m.down() == []
    assert not rules.has_table("raw")
    # A table that was there before (an operator's rule in it) is never dropped.
    mine = Rule("raw", "OUTPUT", ("-p", "udp"), ("ACCEPT",), "operator")
    rules.insert(mine)
    m.up(plan)
    assert m.down() == []
    assert rules.chain("raw", "OUTPUT") == [mine]


# --- the target's tunnel device --------------------------------------------------------------


def tunnel_host(tmp_path: Path) -> tuple[Host, FakeLinkBackend, Callable[[], RuleManager]]:
    host = Host(tmp_path)
    links = FakeLinkBackend()
    host.sysctl.values["net.ipv4.conf.nfr0t.rp_filter"] = "1"

    def manager() -> RuleManager:
        return RuleManager("nfreplay:target:lab1", Journal(host.journal_path), host.nft,
                           host.routes, host.sysctl, sweep=[host.legacy], links=links)
    return host, links, manager


def test_tunnel_device_goes_in_first_and_out_last_also_after_a_crash(tmp_path: Path) -> None:
    host, links, manager = tunnel_host(tmp_path)
    p = target_plan("lab1", ["198.18.1.0/24"], "198.18.0.4",
                    Tunnel("vxlan", ("198.18.0.2",), 36525))
    name = p.links[0].name
    manager().up(p)
    entries = Journal(host.journal_path).load()
    assert entries[0] == LinkEntry(p.links[0])
    # With a gateway the replies leave by another device: loose rp_filter on the tunnel's,
    # journaled with nothing to restore (the device goes away).
    assert entries[1] == SysctlEntry(f"net.ipv4.conf.{name}.rp_filter", "", "2")
    assert links.list_owned("nfreplay:target:lab1") == [name]
    assert [r.target for r in host.nft.chain("raw", "PREROUTING")[:2]] == [("ACCEPT",),
                                                                             ("DROP",)]
    assert any(f"ip link add {name}" in line for line in manager().installed())
    # A "crash": a fresh manager removes everything, the device last.
    assert manager().down() == []
    assert links.devices == {} and host.routes.list_owned(156) == []
    assert host.nft.chain("raw", "PREROUTING") == [OPERATOR]
    deletes = [op for op, _ in links.calls if op == "delete"]
    assert deletes and links.calls[-1][0] == "delete"


def test_a_device_left_without_its_journal_is_swept_by_its_alias(tmp_path: Path) -> None:
    host, links, manager = tunnel_host(tmp_path)
    p = target_plan("lab1", ["198.18.1.0/24"], "", Tunnel("vxlan", ("198.18.0.2",), 36525))
    manager().up(p)
    host.journal_path.unlink()  # lost
    links.devices["someone-else"] = ("vxlan", "operator")
    assert manager().down() == []
    assert list(links.devices) == ["someone-else"]


def test_a_device_that_cannot_be_made_rolls_everything_back(tmp_path: Path) -> None:
    host, links, manager = tunnel_host(tmp_path)
    links.fail_always["add"] = "ip link add: Unknown device type"
    p = target_plan("lab1", ["198.18.1.0/24"], "", Tunnel("vxlan", ("198.18.0.2",), 36525))
    with pytest.raises(RulesError, match="rolled back: ip link add: Unknown device type"):
        manager().up(p)
    assert links.devices == {} and host.nft.chain("raw", "PREROUTING") == [OPERATOR]
    assert not host.journal_path.exists()


def test_a_table_two_owners_share_is_dropped_by_whichever_leaves_last(tmp_path) -> None:
    """The tunnel end and a colocated assist both put rules in `raw`; in a pod they start and
    stop in any order: the table goes with the last of them, whoever made it."""
    from tests.unit.rules.fakes import FakeRouteBackend, FakeRuleBackend, FakeSysctlBackend
    from nfreplay.rules.journal import Journal
    from nfreplay.rules.manager import RuleManager
    from nfreplay.rules.model import Rule, Tunnel, assist_plan, target_plan

    assist = assist_plan("t1", "198.18.0.3", 80, ["198.18.1.0/24"], "colocated", 0)
    target = target_plan("t1", ["198.18.1.0/24"], "", Tunnel("vxlan", ("198.18.0.2",), 36525))
    tunnel_rules = type(target)(owner=target.owner, rules=target.rules)  # the rules alone
    for first, second in ((assist, tunnel_rules), (tunnel_rules, assist)):
        rules = FakeRuleBackend()

        def manager(p, name):  # type: ignore[no-untyped-def]
            return RuleManager(p.owner, Journal(tmp_path / f"{name}.json"), rules,
                               FakeRouteBackend(), FakeSysctlBackend({"net.ipv4.ip_forward": "0"}))

        made, joined = manager(first, "first"), manager(second, "second")
        made.up(first)
        joined.up(second)
        assert made.down() == [] and rules.has_table("raw")  # the other's rules are in it
        assert joined.down() == [] and not rules.has_table("raw")
        # Stopped in the order they started: the last one out drops it just the same.
        made.up(first)
        joined.up(second)
        assert joined.down() == [] and rules.has_table("raw")
        assert made.down() == [] and not rules.has_table("raw")
    # An operator's rule keeps the table, whatever the order.
    rules = FakeRuleBackend()
    mine = Rule("raw", "OUTPUT", ("-p", "udp"), ("ACCEPT",), "operator")
    rules.insert(mine)
    a = RuleManager(assist.owner, Journal(tmp_path / "a.json"), rules, FakeRouteBackend(),
                    FakeSysctlBackend({"net.ipv4.ip_forward": "0"}))
    t = RuleManager(target.owner, Journal(tmp_path / "t.json"), rules, FakeRouteBackend(),
                    FakeSysctlBackend({"net.ipv4.ip_forward": "0"}))
    a.up(assist)
    t.up(tunnel_rules)
    assert a.down() == [] and t.down() == []
    assert rules.chain("raw", "OUTPUT") == [mine]
