"""The rule manager on the real backends, inside throw-away network namespaces (root).

python-iptables, pyroute2 and /proc/sys act on the namespace of the calling process, so the
manager runs in a separate Python process started with `ip netns exec NS`: this very file,
run as `python -m tests.lab.test_rules_backends '<json>'` (see `agent` at the bottom). The
test process itself only reads state (`iptables-*-save`, `ip route`, /proc/sys) through
`ip netns exec` and never touches the root namespace's firewall.

Addresses: only 198.18.0.0/15. The "target" end of the veth is 198.18.0.1, the "assistant"
end 198.18.0.2; clients are 198.18.1.0/24 and 198.18.2.0/24.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator

import pytest

from tests.lab.netns import netns, run_in, veth

REPO = Path(__file__).resolve().parents[2]
PREFIX = "nfrr"
TABLES = ("filter", "nat", "mangle", "raw", "security")
CLIENTS = ["198.18.1.0/24", "198.18.2.0/24"]
OPERATOR_RULE = ["-t", "raw", "-A", "PREROUTING", "-s", "198.18.9.9/32", "-m", "comment",
                 "--comment", "operator", "-j", "ACCEPT"]


def _why_skip() -> str | None:
    if os.geteuid() != 0:
        return "lab tests need root (network namespaces, iptables)"
    for tool in ("ip", "iptables-nft", "iptables-nft-save", "iptables-legacy",
                 "iptables-legacy-save"):
        if shutil.which(tool) is None:
            return f"{tool} not installed (apt-get install iptables iproute2)"
    return None


pytestmark = [pytest.mark.lab, pytest.mark.skipif(_why_skip() is not None,
                                                  reason=_why_skip() or "")]



# --- helpers for the test process --------------------------------------------------------
def save(ns: str, program: str) -> str:
    """`program` (iptables-nft-save / iptables-legacy-save) output without the comment lines,
    which carry a timestamp."""
    out = run_in(ns, [program]).stdout
    return "".join(line + "\n" for line in out.splitlines() if not line.startswith("#"))


def saves(ns: str) -> dict[str, str]:
    return {p: save(ns, p) for p in ("iptables-nft-save", "iptables-legacy-save")}


def sysctl(ns: str, key: str) -> str:
    return run_in(ns, ["cat", "/proc/sys/" + key.replace(".", "/")]).stdout.strip()


def agent(ns: str, op: str, backend: str, journals: Path, plans: list[str],
          wait: bool = False) -> Any:
    """Run one manager operation inside `ns`; returns the agent's JSON answer."""
    spec = json.dumps({"op": op, "backend": backend, "journals": str(journals), "plans": plans})
    done = run_in(ns, [sys.executable, "-m", "tests.lab.test_rules_backends", spec], cwd=REPO,
                  check=False)
    assert done.returncode == 0, f"agent {op} failed: {done.stderr}"
    return json.loads(done.stdout.splitlines()[-1])


def lab_net(a: str, b: str) -> None:
    """veth target(a) 198.18.0.1/30 <-> assistant(b) 198.18.0.2/30."""
    veth(a, "nfrt0", b, "nfra0")
    run_in(a, ["ip", "addr", "add", "198.18.0.1/30", "dev", "nfrt0"])
    run_in(b, ["ip", "addr", "add", "198.18.0.2/30", "dev", "nfra0"])


def seed_operator_rules(ns: str) -> None:
    """An operator's rule in both backends (ours must go above it and leave it alone), and
    every legacy table opened once: python-iptables instantiates all five legacy tables when
    it builds an NFQUEUE target, and a legacy table cannot be removed again, so a
    byte-for-byte comparison needs them to exist before the first snapshot."""
    for ipt in ("iptables-nft", "iptables-legacy"):
        run_in(ns, [ipt, "-w", *OPERATOR_RULE])
    for table in TABLES:
        run_in(ns, ["iptables-legacy", "-w", "-t", table, "-S"])


def only_empty_tables(save_text: str) -> bool:
    """True if a save output holds nothing but built-in chains with ACCEPT policy."""
    for line in save_text.splitlines():
        if line.startswith(("*", "COMMIT")):
            continue
        if line.startswith(":") and line.split()[1] == "ACCEPT":
            continue
        return False
    return True


@pytest.fixture
def journals(tmp_path: Path) -> Path:
    path = tmp_path / "journals"
    path.mkdir()
    return path


@pytest.fixture
def assistant() -> Iterator[str]:
    with netns(PREFIX) as ns:
        yield ns


# --- the tests -------------------------------------------------------------------------
@pytest.mark.parametrize("backend", ["nft", "legacy"])
def test_up_down_leaves_both_rulesets_byte_identical(assistant: str, journals: Path,
                                                     backend: str) -> None:
    ns = assistant
    root_forward = Path("/proc/sys/net/ipv4/ip_forward").read_text()
    seed_operator_rules(ns)
    run_in(ns, ["sysctl", "-qw", "net.ipv4.ip_forward=1"])
    before = saves(ns)
    ours, other = (("iptables-nft-save", "iptables-legacy-save") if backend == "nft"
                   else ("iptables-legacy-save", "iptables-nft-save"))

    up = agent(ns, "up", backend, journals, ["assist"])
    assert up["installed"], up
    after_up = saves(ns)
    chain = [line for line in after_up[ours].splitlines() if line.startswith("-A PREROUTING")]
    tag = '--comment "nfreplay:assist:lab1"'
    assert chain == [
        f"-A PREROUTING -s 198.18.0.1/32 -d 198.18.1.7/32 -p tcp -m tcp --sport 80 -m comment {tag} -j ACCEPT",
        f"-A PREROUTING -s 198.18.0.1/32 -d 198.18.1.0/24 -p tcp -m tcp --sport 80 -m comment {tag} -j NFQUEUE --queue-num 3",
        f"-A PREROUTING -s 198.18.0.1/32 -d 198.18.2.0/24 -p tcp -m tcp --sport 80 -m comment {tag} -j NFQUEUE --queue-num 3",
        "-A PREROUTING -s 198.18.9.9/32 -m comment --comment operator -j ACCEPT",
    ]
    assert after_up[other] == before[other]
    if backend == "nft":
        assert chain[1][3:] in run_in(ns, ["iptables", "-t", "raw", "-S"]).stdout
    assert sysctl(ns, "net.ipv4.ip_forward") == "0"
    assert (journals / "assist.json").exists()

    # up again: still one copy of each rule; the old ip_forward value is still the original
    agent(ns, "up", backend, journals, ["assist"])
    assert saves(ns) == after_up
    assert agent(ns, "installed", backend, journals, ["assist"])["installed"] == up["installed"]

    down = agent(ns, "down", backend, journals, ["assist"])
    assert down["problems"] == []
    assert saves(ns) == before
    assert sysctl(ns, "net.ipv4.ip_forward") == "1"
    assert not (journals / "assist.json").exists()
    assert Path("/proc/sys/net/ipv4/ip_forward").read_text() == root_forward


@pytest.mark.parametrize("backend", ["nft", "legacy"])
def test_queue_balance_rule_round_trips(assistant: str, journals: Path, backend: str) -> None:
    """assist.queues 2: `--queue-balance 3:4` goes in, reads back as the rule planned (up again
    installs nothing), and down leaves the rulesets as they were."""
    ns = assistant
    seed_operator_rules(ns)
    before = saves(ns)
    ours = "iptables-nft-save" if backend == "nft" else "iptables-legacy-save"
    up = agent(ns, "up", backend, journals, ["balance"])
    assert up["installed"], up
    after_up = saves(ns)
    assert [line for line in after_up[ours].splitlines() if line.startswith("-A OUTPUT")] == [
        f"-A OUTPUT -s 198.18.0.1/32 -d {CLIENTS[0]} -p tcp -m tcp --sport 80 -m comment "
        '--comment "nfreplay:assist:lab2" -j NFQUEUE --queue-balance 3:4']
    agent(ns, "up", backend, journals, ["balance"])
    assert saves(ns) == after_up
    assert agent(ns, "down", backend, journals, ["balance"])["problems"] == []
    assert saves(ns) == before


@pytest.mark.parametrize("backend", ["nft", "legacy"])
def test_pristine_namespace_keeps_only_empty_builtin_tables(assistant: str, journals: Path,
                                                            backend: str) -> None:
    """What an operator's host looks like after up/down when iptables was never used: no
    rule is left; the backend keeps the (empty) tables it had to create. The nft backend
    never instantiates legacy tables, so `iptables` does not start warning about them."""
    ns = assistant
    agent(ns, "up", backend, journals, ["assist"])
    assert agent(ns, "down", backend, journals, ["assist"])["problems"] == []
    after = saves(ns)
    assert "nfreplay" not in after["iptables-nft-save"] + after["iptables-legacy-save"]
    assert only_empty_tables(after["iptables-nft-save"])
    assert only_empty_tables(after["iptables-legacy-save"])
    legacy_tables = run_in(ns, ["cat", "/proc/net/ip_tables_names"]).stdout.split()
    if backend == "nft":
        assert legacy_tables == []
        assert "Warning" not in run_in(ns, ["iptables", "-S"]).stdout


@pytest.mark.parametrize("backend", ["nft", "legacy"])
def test_lost_journal_still_removes_tagged_rules(assistant: str, journals: Path,
                                                 backend: str) -> None:
    ns = assistant
    seed_operator_rules(ns)
    before = saves(ns)
    run_in(ns, ["sysctl", "-qw", "net.ipv4.ip_forward=0"])  # nothing to fix, nothing recorded
    agent(ns, "up", backend, journals, ["assist"])
    (journals / "assist.json").unlink()
    assert agent(ns, "down", backend, journals, ["assist"])["problems"] == []
    assert saves(ns) == before


def test_rules_of_the_other_backend_are_swept(assistant: str, journals: Path) -> None:
    """A run with --backend legacy, then one with nft: the nft run's up removes the legacy
    copy (both would be live at once) and its down leaves nothing in either."""
    ns = assistant
    seed_operator_rules(ns)
    before = saves(ns)
    agent(ns, "up", "legacy", journals, ["assist"])
    (journals / "assist.json").unlink()  # as if the journal was lost too
    agent(ns, "up", "nft", journals, ["assist"])
    assert "nfreplay" not in save(ns, "iptables-legacy-save")
    assert "nfreplay" in save(ns, "iptables-nft-save")
    assert agent(ns, "down", "nft", journals, ["assist"])["problems"] == []
    assert saves(ns) == before


def test_target_route_via_veth_peer(journals: Path) -> None:
    with netns(PREFIX) as target, netns(PREFIX) as assist:
        lab_net(target, assist)
        # operator routes: the same client prefix in another table, another prefix in main
        run_in(target, ["ip", "route", "add", "198.18.1.0/24", "via", "198.18.0.2", "table", "100"])
        run_in(target, ["ip", "route", "add", "198.18.3.0/24", "via", "198.18.0.2"])
        routes_before = run_in(target, ["ip", "-4", "route", "show", "table", "all"]).stdout
        rules_before = run_in(target, ["ip", "-4", "rule"]).stdout
        up = agent(target, "up", "nft", journals, ["target"])
        shown = run_in(target, ["ip", "route", "show", "table", "156"]).stdout.splitlines()
        assert [line.split()[:3] for line in shown] == [
            ["198.18.1.0/24", "via", "198.18.0.2"], ["blackhole", "198.18.1.0/24", "proto"],
            ["198.18.2.0/24", "via", "198.18.0.2"], ["blackhole", "198.18.2.0/24", "proto"]]
        assert "via 198.18.0.2" in run_in(target, ["ip", "route", "get", "198.18.2.77"]).stdout
        assert up["installed"] == [
            "ip route add blackhole 198.18.1.0/24 metric 4294967295 proto 156 table 156",
            "ip route add 198.18.1.0/24 via 198.18.0.2 proto 156 table 156",
            "ip route add blackhole 198.18.2.0/24 metric 4294967295 proto 156 table 156",
            "ip route add 198.18.2.0/24 via 198.18.0.2 proto 156 table 156",
            "ip rule add to 198.18.1.0/24 lookup 156 pref 156 proto 156",
            "ip rule add to 198.18.1.0/24 blackhole pref 157 proto 156",
            "ip rule add to 198.18.2.0/24 lookup 156 pref 156 proto 156",
            "ip rule add to 198.18.2.0/24 blackhole pref 157 proto 156"]
        assert agent(target, "down", "nft", journals, ["target"])["problems"] == []
        assert run_in(target, ["ip", "-4", "route", "show", "table", "all"]).stdout == routes_before
        assert run_in(target, ["ip", "-4", "rule"]).stdout == rules_before


def test_target_fails_closed_after_a_link_flap(journals: Path) -> None:
    """The kernel deletes the route via the assistant when its link goes down; when the link
    comes back with a default route (as DHCP or networkd would restore it), replies to the
    clients must still not leave by that default route: the blackhole behind it drops them."""
    with netns(PREFIX) as target, netns(PREFIX) as assist:
        lab_net(target, assist)
        run_in(target, ["ip", "route", "add", "default", "via", "198.18.0.2"])
        agent(target, "up", "nft", journals, ["target"])
        run_in(target, ["ip", "link", "set", "nfrt0", "down"])
        run_in(target, ["ip", "link", "set", "nfrt0", "up"])
        run_in(target, ["ip", "route", "replace", "default", "via", "198.18.0.2"])
        via = run_in(target, ["ip", "route", "show", "table", "156"]).stdout
        assert "via" not in via and "blackhole 198.18.1.0/24" in via  # the kernel took the route
        got = subprocess.run(["ip", "netns", "exec", target, "ip", "route", "get",
                              "198.18.1.77"], capture_output=True, text=True)
        assert got.returncode != 0 and "via" not in got.stdout, got.stdout  # no route out
        assert "via 198.18.0.2" in run_in(target, ["ip", "route", "get", "198.18.3.1"]).stdout
        # Even with table 156 flushed, the blackhole rule behind the lookup drops them.
        run_in(target, ["ip", "route", "flush", "table", "156"])
        got = subprocess.run(["ip", "netns", "exec", target, "ip", "route", "get",
                              "198.18.1.77"], capture_output=True, text=True)
        assert got.returncode != 0 and "via" not in got.stdout, got.stdout
        status = agent(target, "installed", "nft", journals, ["target"])
        assert "MISSING: ip route add 198.18.1.0/24 via 198.18.0.2 proto 156 table 156" in (
            status["installed"])
        assert agent(target, "down", "nft", journals, ["target"])["problems"] == []
        assert "156" not in run_in(target, ["ip", "-4", "rule"]).stdout


@pytest.mark.parametrize("backend", ["nft", "legacy"])
def test_kill_9_between_up_and_down(journals: Path, backend: str) -> None:
    """A process brings up the assist rules, the ip_forward fix and the target routes, and is
    killed with SIGKILL; a fresh process's down restores everything."""
    with netns(PREFIX) as ns, netns(PREFIX) as peer:
        lab_net(ns, peer)
        seed_operator_rules(ns)
        run_in(ns, ["sysctl", "-qw", "net.ipv4.ip_forward=1"])
        before = saves(ns)
        routes_before = run_in(ns, ["ip", "-4", "route", "show", "table", "all"]).stdout
        spec = json.dumps({"op": "up-wait", "backend": backend, "journals": str(journals),
                           "plans": ["assist", "target"]})
        proc = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, "-m",
                                 "tests.lab.test_rules_backends", spec], cwd=REPO,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            assert proc.stdout is not None
            ready = json.loads(proc.stdout.readline() or "{}")
            assert ready.get("ready"), proc.stderr.read() if proc.stderr else ""
            assert "nfreplay" in saves(ns)[f"iptables-{backend}-save"]
            assert sysctl(ns, "net.ipv4.ip_forward") == "0"
        finally:
            os.kill(proc.pid, signal.SIGKILL)  # `ip netns exec` execs: this pid is the python
            proc.wait(timeout=10)
        assert proc.returncode == -signal.SIGKILL

        down = agent(ns, "down", backend, journals, ["assist", "target"])
        assert down["problems"] == []
        assert saves(ns) == before
        assert sysctl(ns, "net.ipv4.ip_forward") == "1"
        assert run_in(ns, ["ip", "-4", "route", "show", "table", "all"]).stdout == routes_before
        assert list(journals.iterdir()) == []


# --- the agent: runs inside the namespace -------------------------------------------------
def _plans() -> dict[str, Any]:
    from nfreplay.rules.model import assist_plan, target_plan

    return {
        "assist": assist_plan("lab1", "198.18.0.1", 80, CLIENTS, "assistant", 3,
                              passlist=["198.18.1.7"], fix_ip_forward=True),
        "target": target_plan("lab1", CLIENTS, "198.18.0.2"),
        "balance": assist_plan("lab2", "198.18.0.1", 80, CLIENTS[:1], "colocated", 3, queues=2),
    }


def _agent_main(spec: dict[str, Any]) -> dict[str, Any]:
    import time

    from nfreplay.errors import NfreplayError
    from nfreplay.rules import (
        Journal,
        ProcSysctlBackend,
        RtnetlinkRouteBackend,
        RuleManager,
        select_backend,
        sweep_backends,
    )

    rules = select_backend(spec["backend"])
    sweep = sweep_backends(rules)
    plans = _plans()
    managers = []
    for name in spec["plans"]:
        plan = plans[name]
        managers.append((RuleManager(plan.owner, Journal(Path(spec["journals"]) / f"{name}.json"),
                                     rules, RtnetlinkRouteBackend(), ProcSysctlBackend(),
                                     sweep=sweep), plan))
    op = spec["op"]
    try:
        if op in ("up", "up-wait"):
            for manager, plan in managers:
                manager.up(plan)
            if op == "up-wait":
                print(json.dumps({"ready": True}), flush=True)
                while True:
                    time.sleep(60)  # until SIGKILL
            return {"installed": [line for m, _ in managers for line in m.installed()]}
        if op == "down":
            return {"problems": [p for m, _ in reversed(managers) for p in m.down()]}
        if op == "installed":
            return {"installed": [line for m, _ in managers for line in m.installed()]}
    except NfreplayError as exc:
        print(f"nfreplay: {exc}", file=sys.stderr)
        raise SystemExit(1) from None
    raise SystemExit(f"unknown op {op}")


if __name__ == "__main__":
    print(json.dumps(_agent_main(json.loads(sys.argv[1]))))
