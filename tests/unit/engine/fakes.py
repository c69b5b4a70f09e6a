"""In-memory stand-ins for the online engine's adapters (its sender, an assistant)."""

from __future__ import annotations


class FakeSender:
    def __init__(self) -> None:
        self.sent: list[bytes] = []

    def send(self, pkt: bytes, dst: str) -> bool:
        assert dst == "198.18.0.3"
        self.sent.append(bytes(pkt))
        return True


class FakeAssistant:
    """Takes every announcement (`announced`), or none when `up` is False."""

    def __init__(self) -> None:
        self.up = True
        self.announced: list[bytes] = []
        self.conns: list[object] = []

    def announce(self, msg: bytes) -> bool:
        if self.up:
            self.announced.append(msg)
        return self.up
