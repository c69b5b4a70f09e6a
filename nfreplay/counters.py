"""Counters for the hot loops: plain ints on a ``__slots__`` object, declared once.

Hot loops only do ``counters.name += 1``: no locks, no dicts, no method calls. Pure: imports
nothing of nfreplay, so the session machine can count without pulling anything else in.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, ClassVar

__all__ = ["Counters", "counters_type"]



class _Declared(type):
    """Gives each ``Counters`` class the ``__slots__`` its ``name: int`` annotations declare,
    so that a counter is written once, typed for mypy, and a misspelt one fails at run time."""

    def __new__(mcs, name: str, bases: tuple[type, ...], ns: dict[str, Any],
                **kwargs: Any) -> _Declared:
        if "__slots__" not in ns:
            annotations = ns.get("__annotations__", {})
            ns["__slots__"] = tuple(k for k, v in annotations.items() if v in (int, "int"))
        return super().__new__(mcs, name, bases, ns, **kwargs)


class Counters(metaclass=_Declared):
    """Plain-int counters on a ``__slots__`` object; subclass it with the names you need::

        class AssistCounters(Counters):
            queued: int
            dropped: int

    Every counter starts at 0; name the levels among them in ``levels``. ``snapshot()`` returns them in declaration order (base classes
    first). Or build a class from a tuple of names with ``counters_type``.
    """

    __slots__ = ()
    names: ClassVar[tuple[str, ...]] = ()
    levels: ClassVar[frozenset[str]] = frozenset()
    """Counters that are levels (live sessions, bytes held), not running totals: they go up
    and down, so they have no rate (`status`) and are gauges, not `_total`s (metrics)."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        slots = cls.__dict__["__slots__"]
        own: tuple[str, ...] = (slots,) if isinstance(slots, str) else tuple(slots)
        for name in own:
            if not name.isidentifier() or name.startswith("_") or hasattr(Counters, name):
                raise TypeError(f"{cls.__name__}: bad counter name {name!r}")
        inherited = cls.names
        clash = set(own) & set(inherited)
        if clash or len(set(own)) != len(own):
            raise TypeError(f"{cls.__name__}: duplicate counter names")
        cls.names = inherited + own

    def __init__(self) -> None:
        for name in self.names:
            setattr(self, name, 0)

    def snapshot(self) -> dict[str, int]:
        """A copy of every counter, for ``StatsFile.write`` (cheap, but not for per packet)."""
        return {name: getattr(self, name) for name in self.names}

    def __repr__(self) -> str:
        inner = ", ".join(f"{k}={v}" for k, v in self.snapshot().items())
        return f"{type(self).__name__}({inner})"


def counters_type(name: str, names: Iterable[str]) -> type[Counters]:
    """Build a ``Counters`` subclass called ``name`` with one int counter per name."""
    return type(name, (Counters,), {"__slots__": tuple(names)})
