"""The link-layer path for replayed packets, chosen from the kernel's route, link and
neighbour facts: every case that must go to the kernel instead, and the header otherwise."""

from __future__ import annotations

import pytest

from nfreplay.proto.nexthop import (ARPHRD_ETHER, IFF_UP, NUD_DELAY, NUD_FAILED, NUD_INCOMPLETE,
                                    NUD_NOARP, NUD_PERMANENT, NUD_PROBE, NUD_REACHABLE,
                                    NUD_STALE, RTN_LOCAL, RTN_UNICAST, Link, Neighbour, Path,
                                    Route, choose, hop)

DST = "198.18.0.3"
ETH0 = Link(4, "eth0", ARPHRD_ETHER, IFF_UP, "02:00:00:00:00:01")
ON_LINK = Route(RTN_UNICAST, 4, None)
VIA_GW = Route(RTN_UNICAST, 4, "198.18.0.1")
PEER = "0a:0b:0c:0d:0e:0f"


def test_on_link_reachable_neighbour_gives_its_ethernet_header() -> None:
    path = choose(DST, ON_LINK, ETH0, Neighbour(NUD_REACHABLE, PEER))
    assert isinstance(path, Path)
    assert path.header == bytes.fromhex("0a0b0c0d0e0f" "020000000001" "0800")
    assert (path.ifname, path.ifindex, path.verify) == ("eth0", 4, False)
    assert path.describe() == "link eth0 to 0a:0b:0c:0d:0e:0f"


def test_the_neighbour_that_counts_is_the_gateway_when_there_is_one() -> None:
    assert hop(DST, VIA_GW) == "198.18.0.1"
    assert hop(DST, ON_LINK) == DST
    assert choose(DST, VIA_GW, ETH0, None) == "neighbour 198.18.0.1 not resolved yet"


@pytest.mark.parametrize("state", [NUD_REACHABLE, NUD_DELAY, NUD_PROBE, NUD_PERMANENT, NUD_NOARP])
def test_usable_states_need_no_check(state: int) -> None:
    path = choose(DST, ON_LINK, ETH0, Neighbour(state, PEER))
    assert isinstance(path, Path) and not path.verify


def test_a_stale_neighbour_is_used_but_asks_the_kernel_to_check_it() -> None:
    path = choose(DST, ON_LINK, ETH0, Neighbour(NUD_STALE, PEER))
    assert isinstance(path, Path) and path.verify


@pytest.mark.parametrize("neighbour", [None, Neighbour(NUD_INCOMPLETE, None),
                                       Neighbour(NUD_FAILED, PEER), Neighbour(0, None),
                                       Neighbour(NUD_REACHABLE, None)])
def test_unresolved_neighbours_go_through_the_kernel(neighbour: Neighbour | None) -> None:
    assert choose(DST, ON_LINK, ETH0, neighbour) == f"neighbour {DST} not resolved yet"


@pytest.mark.parametrize("route, link, why", [
    (Route(RTN_LOCAL, 1, None), ETH0, "a local address"),
    (Route(6, 0, None), ETH0, "route type 6"),  # blackhole: the kernel refuses, counted
    (ON_LINK, None, "no interface 4"),
    (ON_LINK, Link(9, "wg0", 65534, IFF_UP, None), "wg0 is not Ethernet"),
    (ON_LINK, ETH0._replace(flags=0), "eth0 is down"),
    (ON_LINK, ETH0._replace(mac="00:11"), "eth0: not an Ethernet address"),
])
def test_what_the_link_layer_cannot_do_is_left_to_the_kernel(route: Route, link: Link | None,
                                                              why: str) -> None:
    assert choose(DST, route, link, Neighbour(NUD_REACHABLE, PEER)) == why
