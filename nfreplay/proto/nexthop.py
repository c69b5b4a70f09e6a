"""Where an IPv4 packet goes at the link layer: the next hop's Ethernet header, decided from
the kernel's own route, link and neighbour facts, and the rtnetlink messages that ask for them
(pure; `adapters.rawsock` sends them).

nfreplay-online can put its packets on the wire itself (an AF_PACKET socket) instead of
handing them to the kernel's IP output (a raw IP socket). That skips, for every packet, the
online host's routing, netfilter and connection tracking: on a production host with conntrack
loaded, each replayed session would otherwise hold a conntrack entry that never sees a reply.
It only works where the kernel's answer is plain: a unicast route out of an Ethernet link that
is up, to a neighbour whose address the kernel knows. Anything else is left to the kernel,
which also resolves unknown neighbours (ARP) when it sends.
"""

from __future__ import annotations

import os
import sys
from struct import Struct
from typing import NamedTuple

from nfreplay.errors import WireError

ETH_P_IP = 0x0800
ARPHRD_ETHER = 1
RTN_UNICAST = 1
RTN_LOCAL = 2
IFF_UP = 0x1

# Neighbour states (linux/neighbour.h); NUD_USABLE: those that hold an address to use.
NUD_INCOMPLETE = 0x01
NUD_REACHABLE = 0x02
NUD_STALE = 0x04
NUD_DELAY = 0x08
NUD_PROBE = 0x10
NUD_FAILED = 0x20
NUD_NOARP = 0x40
NUD_PERMANENT = 0x80
NUD_USABLE = NUD_REACHABLE | NUD_STALE | NUD_DELAY | NUD_PROBE | NUD_NOARP | NUD_PERMANENT


class Route(NamedTuple):
    """The kernel's route to a destination (`ip route get`)."""

    kind: int  # RTN_*
    oif: int  # output interface index
    gateway: str | None  # None: the destination is on the link


class Link(NamedTuple):
    ifindex: int
    name: str
    arphrd: int  # link type (ARPHRD_*)
    flags: int  # IFF_*
    mac: str | None  # "aa:bb:cc:dd:ee:ff"


class Neighbour(NamedTuple):
    state: int  # NUD_*
    mac: str | None


class Path(NamedTuple):
    """Send on interface `ifname` (`ifindex`) with this Ethernet header in front."""

    ifname: str
    ifindex: int
    header: bytes
    # The kernel's entry is STALE: nothing it sent has confirmed the address lately, and our
    # packets bypass it, so it would stay stale (and wrong, should the neighbour's address
    # change). One packet through the kernel makes it check (DELAY, then a unicast probe).
    verify: bool

    def describe(self) -> str:
        mac = ":".join(f"{b:02x}" for b in self.header[:6])
        return f"link {self.ifname} to {mac}"


def mac_bytes(mac: str) -> bytes:
    """"aa:bb:cc:dd:ee:ff" → 6 bytes; ValueError if it is not an Ethernet address."""
    raw = bytes.fromhex(mac.replace(":", ""))
    if len(raw) != 6:
        raise ValueError(f"not an Ethernet address: {mac!r}")
    return raw


def hop(dst: str, route: Route) -> str:
    """The address whose neighbour entry the path needs: the gateway, or `dst` on the link."""
    return route.gateway or dst


def choose(dst: str, route: Route, link: Link | None, neighbour: Neighbour | None) -> Path | str:
    """The link-layer path for packets to `dst`, or why the kernel has to send them (said in
    `status`)."""
    if route.kind == RTN_LOCAL:
        return "a local address"
    if route.kind != RTN_UNICAST:
        return f"route type {route.kind}"
    if link is None:
        return f"no interface {route.oif}"
    if link.arphrd != ARPHRD_ETHER:
        return f"{link.name} is not Ethernet"
    if not link.flags & IFF_UP:
        return f"{link.name} is down"
    if neighbour is None or not neighbour.state & NUD_USABLE or not neighbour.mac:
        return f"neighbour {hop(dst, route)} not resolved yet"
    try:
        header = mac_bytes(neighbour.mac) + mac_bytes(link.mac or "") + ETH_P_IP.to_bytes(2, "big")
    except ValueError:
        return f"{link.name}: not an Ethernet address"
    return Path(link.name, link.ifindex, header, verify=bool(neighbour.state & NUD_STALE))


# ---------------------------------------------------------------- rtnetlink messages
# The three questions the adapter asks the kernel (`ip route get`, `ip link show`, `ip neigh
# get`), as rtnetlink requests, and the parts of the answers `choose` needs. The layouts are
# linux/netlink.h, rtnetlink.h, if_link.h and neighbour.h; native byte order.

NLMSG_ERROR = 2
NLM_F_REQUEST = 1
RTM_NEWLINK, RTM_GETLINK = 16, 18
RTM_NEWROUTE, RTM_GETROUTE = 24, 26
RTM_NEWNEIGH, RTM_GETNEIGH = 28, 30
RTA_DST, RTA_OIF, RTA_GATEWAY, RTA_VIA = 1, 4, 5, 18
IFLA_ADDRESS, IFLA_IFNAME = 1, 3
NDA_DST, NDA_LLADDR = 1, 2
_AF_INET = 2

_NLMSGHDR = Struct("=IHHII")  # length, type, flags, sequence, port id
_RTMSG = Struct("=BBBBBBBBI")  # family, dst_len, src_len, tos, table, protocol, scope, type, flags
_IFINFOMSG = Struct("=BxHiII")  # family, type, index, flags, change
_NDMSG = Struct("=BxxxiHBB")  # family, ifindex, state, flags, type
_RTATTR = Struct("=HH")  # length, type


def _attr(kind: int, value: bytes) -> bytes:
    raw = _RTATTR.pack(4 + len(value), kind) + value
    return raw + bytes(-len(raw) % 4)


def _message(kind: int, seq: int, body: bytes) -> bytes:
    return _NLMSGHDR.pack(16 + len(body), kind, NLM_F_REQUEST, seq, 0) + body


def route_request(seq: int, dst: str) -> bytes:
    """RTM_GETROUTE for `dst` (dotted IPv4)."""
    body = _RTMSG.pack(_AF_INET, 32, 0, 0, 0, 0, 0, 0, 0) + _attr(RTA_DST, _inet(dst))
    return _message(RTM_GETROUTE, seq, body)


def link_request(seq: int, ifindex: int) -> bytes:
    """RTM_GETLINK for interface `ifindex`."""
    return _message(RTM_GETLINK, seq, _IFINFOMSG.pack(0, 0, ifindex, 0, 0))


def neighbour_request(seq: int, dst: str, ifindex: int) -> bytes:
    """RTM_GETNEIGH for `dst` on interface `ifindex`."""
    body = _NDMSG.pack(_AF_INET, ifindex, 0, 0, 0) + _attr(NDA_DST, _inet(dst))
    return _message(RTM_GETNEIGH, seq, body)


def _inet(dotted: str) -> bytes:
    parts = [int(p) for p in dotted.split(".")]
    if len(parts) != 4 or not all(0 <= p <= 255 for p in parts):
        raise ValueError(f"not an IPv4 address: {dotted!r}")
    return bytes(parts)


def reply(data: bytes, seq: int) -> tuple[int, bytes] | None:
    """The answer to request `seq` in `data` (one datagram) as (message type, body), or None
    if `data` holds none (another request's). The kernel's refusal raises OSError(errno)."""
    pos = 0
    while pos + 16 <= len(data):
        length, kind, _flags, got, _pid = _NLMSGHDR.unpack_from(data, pos)
        if length < 16 or pos + length > len(data):
            raise WireError(f"rtnetlink: message length {length} does not fit")
        if got == seq:
            body = data[pos + 16:pos + length]
            if kind == NLMSG_ERROR:
                error = -int.from_bytes(body[:4], "little", signed=True) if len(body) >= 4 else 0
                if error:
                    raise OSError(error, os.strerror(error))
            return kind, body
        pos += (length + 3) & ~3
    return None


def _attrs(body: bytes, start: int) -> dict[int, bytes]:
    out: dict[int, bytes] = {}
    pos = start
    while pos + 4 <= len(body):
        length, kind = _RTATTR.unpack_from(body, pos)
        if length < 4 or pos + length > len(body):
            raise WireError(f"rtnetlink: attribute length {length} does not fit")
        out.setdefault(kind & 0x3FFF, body[pos + 4:pos + length])  # without NLA_F_* bits
        pos += (length + 3) & ~3
    return out


def _need(body: bytes, layout: Struct, what: str) -> None:
    if len(body) < layout.size:
        raise WireError(f"rtnetlink: {what} of {len(body)} bytes")


def parse_route(body: bytes) -> tuple[Route, bool]:
    """A RTM_NEWROUTE body: the route, and whether its gateway is of another family
    (RTA_VIA), which `choose` cannot follow."""
    _need(body, _RTMSG, "route")
    kind = _RTMSG.unpack_from(body)[7]
    attrs = _attrs(body, _RTMSG.size)
    oif = int.from_bytes(attrs.get(RTA_OIF, b"\0\0\0\0")[:4], sys.byteorder)
    gw = attrs.get(RTA_GATEWAY)
    gateway = ".".join(str(b) for b in gw) if gw is not None and len(gw) == 4 else None
    return Route(kind, oif, gateway), RTA_VIA in attrs


def parse_link(body: bytes) -> Link:
    """A RTM_NEWLINK body."""
    _need(body, _IFINFOMSG, "link")
    _family, arphrd, index, flags, _change = _IFINFOMSG.unpack_from(body)
    attrs = _attrs(body, _IFINFOMSG.size)
    name = attrs.get(IFLA_IFNAME, b"").split(b"\0", 1)[0].decode(errors="replace")
    address = attrs.get(IFLA_ADDRESS)
    mac = ":".join(f"{b:02x}" for b in address) if address else None
    return Link(index, name, arphrd, flags, mac)


def parse_neighbour(body: bytes) -> Neighbour:
    """A RTM_NEWNEIGH body."""
    _need(body, _NDMSG, "neighbour")
    state = _NDMSG.unpack_from(body)[2]
    lladdr = _attrs(body, _NDMSG.size).get(NDA_LLADDR)
    return Neighbour(state, ":".join(f"{b:02x}" for b in lladdr) if lladdr else None)
