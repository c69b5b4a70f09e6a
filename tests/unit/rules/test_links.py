"""IpLinkBackend with a scripted `ip`: the command lines it runs and how it reads `ip -j`."""

from __future__ import annotations

import json
from collections.abc import Collection, Sequence

import pytest

from nfreplay.errors import RulesError
from nfreplay.rules.command import Completed
from nfreplay.rules.links import IpLinkBackend
from nfreplay.rules.model import Link

LINK = Link("nfr0t", "vxlan", ("id", "7", "dstport", "36525", "nolearning"),
            "nfreplay:target:lab1", address="02:6e:66:72:00:01")


class Ip:
    """Answers per command prefix; records every argv."""

    def __init__(self, answers: dict[str, tuple[int, str, str]] | None = None) -> None:
        self.answers = answers or {}
        self.argv: list[str] = []

    def __call__(self, argv: Sequence[str], *, ok: Collection[int] = (0,)) -> Completed:
        line = " ".join(argv)
        self.argv.append(line)
        rc, out, err = next((a for p, a in self.answers.items() if line.startswith(p)),
                            (0, "", ""))
        if rc not in ok:
            raise RulesError(f"{line} failed (exit {rc}): {err}")
        return Completed(tuple(argv), rc, out, err)


def shown(*devices: dict) -> tuple[int, str, str]:
    return 0, json.dumps(list(devices)), ""


def test_add_creates_tags_and_raises_the_device() -> None:
    ip = Ip()
    IpLinkBackend(ip).add(LINK)
    assert ip.argv == [
        "ip link add nfr0t address 02:6e:66:72:00:01 type vxlan id 7 dstport 36525 nolearning",
        "ip link set nfr0t alias nfreplay:target:lab1 up"]


def test_exists_wants_name_kind_and_owner() -> None:
    ours = {"ifname": "nfr0t", "ifalias": "nfreplay:target:lab1",
            "linkinfo": {"info_kind": "vxlan"}}
    assert IpLinkBackend(Ip({"ip -j -d link show": shown(ours)})).exists(LINK)
    assert not IpLinkBackend(Ip({"ip -j -d link show": shown({**ours, "ifalias": "x"})})
                             ).exists(LINK)
    gone = (1, "", 'Device "nfr0t" does not exist.\n')
    assert not IpLinkBackend(Ip({"ip -j -d link show": gone})).exists(LINK)


def test_list_owned_and_delete_of_what_is_gone() -> None:
    ip = Ip({"ip -j -d link show": shown({"ifname": "a", "ifalias": "nfreplay:target:lab1"},
                                         {"ifname": "b"}),
             "ip link del": (1, "", "Cannot find device \"nfr0t\"\n")})
    backend = IpLinkBackend(ip)
    assert backend.list_owned("nfreplay:target:lab1") == ["a"]
    backend.delete(LINK)  # already gone: success
    with pytest.raises(RulesError, match="Operation not permitted"):
        IpLinkBackend(Ip({"ip link del": (1, "", "RTNETLINK answers: Operation not permitted")})
                      ).delete(LINK)
