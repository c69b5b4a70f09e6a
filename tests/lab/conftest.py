"""The lab tests' fixtures: `lab`, a fresh four-namespace lab per test (torn down whatever
happens), and `servers`, to start real servers in it that are stopped before it goes."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack

import pytest

from tests.lab.topology import Lab


@pytest.fixture
def lab() -> Iterator[Lab]:
    with Lab() as lab:
        yield lab


@pytest.fixture
def servers(lab: Lab) -> Iterator[Callable]:
    """`servers(Redis, "target")` starts a server; every one is stopped (and its directory
    removed) at the end of the test, whatever happened, before the Lab goes."""
    with ExitStack() as stack:
        def start(cls, role: str):  # type: ignore[no-untyped-def]
            server = cls(lab, role)
            stack.callback(server.stop)
            return server.start()
        yield start
