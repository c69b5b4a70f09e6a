"""The rule manager's lock across the processes of a network namespace (no root needed: an
abstract UNIX socket address in this process's own namespace)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from nfreplay.errors import HostError
from nfreplay.rules.netnslock import NetnsLock


def name() -> str:
    return f"nfreplay-test-{os.getpid()}-{time.monotonic_ns()}"


def test_one_holder_at_a_time_reentrant_within_the_process() -> None:
    n = name()
    lock = NetnsLock(n)
    with lock:
        with lock:  # `up` runs `down` inside
            with pytest.raises(HostError, match="held the rules lock for 0 s"):
                with NetnsLock(n, timeout=0.1):
                    pass
        with pytest.raises(HostError):
            with NetnsLock(n, timeout=0.1):
                pass
    with NetnsLock(n, timeout=0.1):  # released
        pass


def test_a_killed_holder_leaves_it_free() -> None:
    n = name()
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from nfreplay.rules.netnslock import NetnsLock\n"
        "with NetnsLock(sys.argv[1]):\n    print('held', flush=True); time.sleep(60)"), n],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        with pytest.raises(HostError):
            with NetnsLock(n, timeout=0.1):
                pass
        holder.send_signal(signal.SIGKILL)
        holder.wait()
        with NetnsLock(n, timeout=5):
            pass
    finally:
        holder.kill()
        holder.wait()


def test_the_manager_holds_it_around_up_and_down(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from nfreplay.rules.journal import Journal
    from nfreplay.rules.manager import RuleManager
    from nfreplay.rules.model import assist_plan
    from tests.unit.rules.fakes import FakeRouteBackend, FakeRuleBackend, FakeSysctlBackend

    held: list[bool] = []
    lock = NetnsLock(name())
    rules = FakeRuleBackend()
    insert = rules.insert

    def spying_insert(*args, **kw):  # type: ignore[no-untyped-def]
        held.append(lock._depth > 0)
        return insert(*args, **kw)

    rules.insert = spying_insert  # type: ignore[method-assign]
    plan = assist_plan("t1", "198.18.0.3", 80, ["198.18.1.0/24"], "colocated", 0)
    m = RuleManager(plan.owner, Journal(tmp_path / "j.json"), rules, FakeRouteBackend(),
                    FakeSysctlBackend({"net.ipv4.ip_forward": "0"}), lock=lock)
    m.up(plan)
    assert held and all(held) and lock._depth == 0
    assert m.down() == [] and lock._depth == 0
