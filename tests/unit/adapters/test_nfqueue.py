"""Every queued packet gets exactly one verdict; an internal error means DROP."""

import pytest

from nfreplay.adapters.nfqueue import Verdicts


class FakePacket:
    def __init__(self, payload: bytes) -> None:
        self.payload = payload
        self.verdicts: list[str] = []

    def get_payload(self) -> bytes:
        return self.payload

    def accept(self) -> None:
        self.verdicts.append("accept")

    def drop(self) -> None:
        self.verdicts.append("drop")


@pytest.mark.parametrize("result, verdict", [(False, "drop"), (True, "accept")])
def test_callback_decides(result: bool, verdict: str) -> None:
    seen = []
    v = Verdicts(lambda b: seen.append(b) or result)
    p = FakePacket(b"hdr")
    v(p)
    assert p.verdicts == [verdict] and seen == [b"hdr"] and v.errors == 0


def test_internal_error_drops_and_counts() -> None:
    def broken(_: bytes) -> bool:
        raise KeyError("bug")

    v = Verdicts(broken)
    p = FakePacket(b"hdr")
    v(p)
    v(FakePacket(b"x"))
    assert p.verdicts == ["drop"] and v.errors == 2
