"""The link-layer path for replayed packets, chosen from the kernel's route, link and
neighbour facts: every case that must go to the kernel instead, and the header otherwise;
the rtnetlink requests that ask for those facts and the parsing of the kernel's answers (the
lab asks the real kernel)."""

from __future__ import annotations

import errno
import struct

import pytest

from nfreplay.errors import WireError
from nfreplay.proto import nexthop

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


# ---------------------------------------------------------------- rtnetlink messages

def kernel(kind: int, seq: int, body: bytes) -> bytes:
    """One message as the kernel would send it (native byte order, 4-byte aligned)."""
    msg = struct.pack("=IHHII", 16 + len(body), kind, 0, seq, 0) + body
    return msg + bytes(-len(msg) % 4)


def attr(kind: int, value: bytes) -> bytes:
    raw = struct.pack("=HH", 4 + len(value), kind) + value
    return raw + bytes(-len(raw) % 4)


def test_requests_are_well_formed_rtnetlink_messages() -> None:
    for req, kind, size in ((nexthop.route_request(7, DST), nexthop.RTM_GETROUTE, 16 + 12 + 8),
                            (nexthop.link_request(7, 4), nexthop.RTM_GETLINK, 16 + 16),
                            (nexthop.neighbour_request(7, DST, 4), nexthop.RTM_GETNEIGH,
                             16 + 12 + 8)):
        length, got_kind, flags, seq, pid = struct.unpack_from("=IHHII", req)
        assert (length, got_kind, flags, seq, pid) == (len(req), kind, 1, 7, 0) and len(req) == size
    assert nexthop.route_request(1, DST)[-4:] == bytes([198, 18, 0, 3])
    with pytest.raises(ValueError):
        nexthop.route_request(1, "198.18.0.300")


def test_a_route_reply_gives_type_interface_and_gateway() -> None:
    body = (struct.pack("=BBBBBBBBI", 2, 32, 0, 0, 254, 0, 0, RTN_UNICAST, 0)
            + attr(nexthop.RTA_DST, bytes([198, 18, 0, 3])) + attr(nexthop.RTA_OIF, struct.pack("=I", 4))
            + attr(nexthop.RTA_GATEWAY, bytes([198, 18, 0, 1])))
    kind, got = nexthop.reply(kernel(nexthop.RTM_NEWROUTE, 9, body), 9) or (0, b"")
    assert kind == nexthop.RTM_NEWROUTE
    assert nexthop.parse_route(got) == (VIA_GW, False)
    on_link = struct.pack("=BBBBBBBBI", 2, 32, 0, 0, 254, 0, 0, RTN_LOCAL, 0) + attr(
        nexthop.RTA_OIF, struct.pack("=I", 1)) + attr(nexthop.RTA_VIA, b"\x0a\x00" + bytes(16))
    assert nexthop.parse_route(on_link) == (Route(RTN_LOCAL, 1, None), True)


def test_link_and_neighbour_replies() -> None:
    link = (struct.pack("=BxHiII", 0, ARPHRD_ETHER, 4, IFF_UP | 0x1000, 0)
            + attr(nexthop.IFLA_ADDRESS, bytes.fromhex("020000000001")) + attr(nexthop.IFLA_IFNAME, b"eth0\0"))
    assert nexthop.parse_link(link) == ETH0._replace(flags=IFF_UP | 0x1000)
    neigh = (struct.pack("=BxxxiHBB", 2, 4, NUD_STALE, 0, 1)
             + attr(nexthop.NDA_DST, bytes([198, 18, 0, 3])) + attr(nexthop.NDA_LLADDR, bytes.fromhex("0a0b0c0d0e0f")))
    assert nexthop.parse_neighbour(neigh) == Neighbour(NUD_STALE, PEER)
    assert nexthop.parse_neighbour(struct.pack("=BxxxiHBB", 2, 4, NUD_INCOMPLETE, 0, 1)) == \
        Neighbour(NUD_INCOMPLETE, None)


def test_reply_skips_other_requests_and_raises_the_kernels_refusal() -> None:
    late = kernel(nexthop.RTM_NEWROUTE, 3, bytes(12))  # the answer to an earlier request
    assert nexthop.reply(late, 4) is None
    error = kernel(nexthop.NLMSG_ERROR, 4, struct.pack("=i", -errno.ENETUNREACH) + bytes(16))
    assert nexthop.reply(late + error, 3) == (nexthop.RTM_NEWROUTE, bytes(12))
    with pytest.raises(OSError) as exc:
        nexthop.reply(late + error, 4)
    assert exc.value.errno == errno.ENETUNREACH


@pytest.mark.parametrize("data", [
    struct.pack("=IHHII", 64, 24, 0, 1, 0),  # longer than the datagram
    struct.pack("=IHHII", 8, 24, 0, 1, 0),  # shorter than its own header
])
def test_malformed_replies_raise_wire_error(data: bytes) -> None:
    with pytest.raises(WireError):
        nexthop.reply(data, 1)


def test_malformed_bodies_raise_wire_error() -> None:
    with pytest.raises(WireError):
        nexthop.parse_route(bytes(8))
    with pytest.raises(WireError):
        nexthop.parse_link(struct.pack("=BxHiII", 0, 1, 4, 1, 0) + struct.pack("=HH", 40, 3))
