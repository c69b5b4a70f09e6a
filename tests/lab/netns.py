"""Throw-away network namespaces for lab tests (root only), shared by the lab suite.

    with netns("nfrr") as a, netns("nfrr") as b:
        veth(a, "va0", b, "vb0")
        run_in(a, ["ip", "addr", "add", "198.18.0.1/30", "dev", "va0"])
        run_in(b, ["iptables-nft-save"]).stdout

Names are unique per process and call (`<prefix><pid>-<n>`), so parallel runs and leftovers of
a crashed run never collide. Deleting is idempotent: a namespace that is already gone counts as
deleted, and `netns()` deletes in `finally`, so a failing test still cleans up. Deleting a
namespace only unmounts its name: processes still inside keep it alive, so tests must end the
processes they start there (by pid) before leaving the `with` block.
"""

from __future__ import annotations

import itertools
import os
import subprocess
from contextlib import contextmanager
from typing import Any, Iterator, Sequence

__all__ = ["netns", "create", "delete", "run_in", "veth", "names", "unique_name"]

_counter = itertools.count(1)


def unique_name(prefix: str) -> str:
    """`<prefix><pid>-<n>`: unique within this run, recognisable afterwards."""
    return f"{prefix}{os.getpid()}-{next(_counter)}"


def names() -> list[str]:
    """Namespaces that exist now (`ip netns list`)."""
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True,
                         check=True).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def create(name: str) -> None:
    """`ip netns add name`, with loopback up (many programs expect 127.0.0.1 to work)."""
    subprocess.run(["ip", "netns", "add", name], check=True, capture_output=True, text=True)
    run_in(name, ["ip", "link", "set", "lo", "up"])


def delete(name: str) -> None:
    """`ip netns del name`; a namespace that is already gone is success."""
    done = subprocess.run(["ip", "netns", "del", name], capture_output=True, text=True)
    if done.returncode != 0 and name in names():
        raise RuntimeError(f"ip netns del {name}: {done.stderr.strip()}")


@contextmanager
def netns(prefix: str = "nfrr") -> Iterator[str]:
    """A fresh, uniquely named namespace, deleted on exit whatever happened."""
    name = unique_name(prefix)
    try:
        create(name)
        yield name
    finally:
        delete(name)


def run_in(ns: str, argv: Sequence[str], check: bool = True,
           **kw: Any) -> subprocess.CompletedProcess[str]:
    """Run `argv` inside `ns` (`ip netns exec`, which also gives it the namespace's own /sys).
    Captures text output unless told otherwise; `check` raises with stderr in the message."""
    kw.setdefault("capture_output", True)
    kw.setdefault("text", True)
    done = subprocess.run(["ip", "netns", "exec", ns, *argv], check=False, **kw)
    if check and done.returncode != 0:
        raise RuntimeError(f"in {ns}: {' '.join(argv)} exited {done.returncode}: "
                           f"{(done.stderr or '').strip()}")
    return done


def veth(ns_a: str, name_a: str, ns_b: str, name_b: str) -> None:
    """A veth pair `name_a` (in ns_a) <-> `name_b` (in ns_b), both up. Names ≤ 15 chars."""
    subprocess.run(["ip", "link", "add", name_a, "netns", ns_a, "type", "veth",
                    "peer", "name", name_b, "netns", ns_b], check=True, capture_output=True)
    run_in(ns_a, ["ip", "link", "set", name_a, "up"])
    run_in(ns_b, ["ip", "link", "set", name_b, "up"])
