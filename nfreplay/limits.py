"""The assist's bounds on its control-channel peers (`assist.max_*`), as plain data: the
configuration takes its defaults from here and the assist engine enforces them, so neither
imports the other."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Limits"]


@dataclass(frozen=True)
class Limits:
    """What one peer, or all of them, may hold on the control channel (assist.max_*)."""

    connections: int = 64
    connections_per_peer: int = 16
    routes: int = 1_000_000
    routes_per_connection: int = 262_144
    parked: int = 65_536
    backlog: int = 8 << 20  # bytes queued for a connection that does not read, at most
    # A connection that has not sent its version message, or that has sent part of a
    # message and nothing more, this long after is closed: it holds a descriptor for nothing.
    stall: float = 5.0
