"""Where an IPv4 packet goes at the link layer: the next hop's Ethernet header, decided from
the kernel's own route, link and neighbour facts (pure; `adapters.rawsock` asks the kernel).

nfreplay-online can put its packets on the wire itself (an AF_PACKET socket) instead of
handing them to the kernel's IP output (a raw IP socket). That skips, for every packet, the
online host's routing, netfilter and connection tracking: on a production host with conntrack
loaded, each replayed session would otherwise hold a conntrack entry that never sees a reply.
It only works where the kernel's answer is plain: a unicast route out of an Ethernet link that
is up, to a neighbour whose address the kernel knows. Anything else is left to the kernel,
which also resolves unknown neighbours (ARP) when it sends.
"""

from __future__ import annotations

from typing import NamedTuple

ETH_P_IP = 0x0800
ARPHRD_ETHER = 1
RTN_UNICAST = 1
RTN_LOCAL = 2
IFF_UP = 0x1

# Neighbour states (linux/neighbour.h): a usable address in each of these.
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
