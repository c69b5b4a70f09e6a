"""Looks for trouble worth a warning, taken by the daemons' loops every CHECK_EVERY seconds:
rising drops (a capture's, a kernel queue's) and failing handshakes. Each says what to do."""

from __future__ import annotations

import logging
from typing import Protocol

log = logging.getLogger("nfreplay")

CHECK_EVERY = 10.0  # seconds between two looks for trouble worth a warning


class DropWatch:
    """One WARN line, with `hint`, each time a running drop count (the capture's, the kernel
    queue's) went up since the previous look. Looked at every CHECK_EVERY seconds."""

    def __init__(self, what: str, hint: str) -> None:
        self.what, self.hint = what, hint
        self.seen = 0  # both counts start at 0 with the daemon (its capture, its queue)
        self.recent = 0  # dropped between the last two looks (status: "drops rising")

    def check(self, total: int, seconds: float) -> None:
        self.recent = max(total - self.seen, 0)
        if self.recent:
            log.warning("%s dropped %d packets in the last %.0f s: %s", self.what,
                        self.recent, seconds, self.hint)
        self.seen = total


class Handshakes(Protocol):
    sessions_handshake_failed: int
    sessions_established: int


class HandshakeWatch:
    """tcpcopy's "many connections can't be established", with what to check: warned when,
    since the last look, sessions failed their handshake with the target and fewer than 80 %
    of the handshakes that ended succeeded."""

    def __init__(self) -> None:
        self.failed = self.established = 0

    def check(self, c: Handshakes) -> None:
        failed = c.sessions_handshake_failed - self.failed
        established = c.sessions_established - self.established
        self.failed, self.established = c.sessions_handshake_failed, c.sessions_established
        if failed and established * 100 < (established + failed) * 80:
            log.warning("%d of %d sessions in the last %.0f s got no answer to their SYN from "
                        "the target: are the target's replies routed to the assistant "
                        "(nfreplay target up; nfreplay doctor target) and queued there "
                        "(nfreplay status on the assistant: packets_queued)? Does the target's "
                        "rp_filter or firewall drop packets from the clients' addresses?",
                        failed, failed + established, CHECK_EVERY)
