"""Tunnelled delivery's wire formats: what goes in front of a replayed IPv4 packet so that the
network between the online host and the target sees only host-to-host traffic.

Every encapsulation here is a constant prefix in front of the inner packet (the clients'
addresses kept inside), carried by a socket whose outer header the kernel writes from the
online host's own address: UDP for "vxlan" and "fou", an IP protocol of its own for "gre"
(47) and "ipip" (4). The target's kernel tunnel device of the same kind takes the prefix off
(`nfreplay target up --tunnel`, `rules.model.target_plan`).

- vxlan (RFC 7348): 8-byte VXLAN header (flag I, the VNI) + an Ethernet header to the target
  device's MAC address (`TARGET_MAC`, set by the rule manager): 50 bytes with the outer IP and
  UDP headers. UDP passes every cloud's security groups; Linux has had the device since 3.7.
- fou (foo-over-UDP, `ip fou add port P ipproto 4`): the inner packet is the UDP payload: 28.
- gre (RFC 2784, no key, no checksum): 4-byte header: 24.
- ipip (RFC 2003): nothing but the outer IP header: 20.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

__all__ = ["ENCAPSULATIONS", "DEFAULT", "DEFAULT_PORT", "VNI", "TARGET_MAC", "SOURCE_MAC",
           "Encapsulation", "encapsulation", "inner_mtu", "max_mss"]

#: VXLAN network identifier of nfreplay's tunnel ("NFR"); a mirror's VNI is another matter.
VNI = 0x4E4652
#: The target's tunnel device answers to this (locally administered) Ethernet address, so the
#: online host needs no neighbour look-up; SOURCE_MAC is what the inner frames claim to be from.
TARGET_MAC = bytes.fromhex("026e66720001")
SOURCE_MAC = bytes.fromhex("026e66720002")
#: UDP port of the "vxlan" and "fou" tunnels on the target: next to the control channel's
#: 36524, so one security-group entry pair covers nfreplay (TCP 36524, UDP 36525).
DEFAULT_PORT = 36525
DEFAULT = "vxlan"

_IP, _UDP = 20, 8


@dataclass(frozen=True)
class Encapsulation:
    """One way through a tunnel: `prefix` goes in front of each inner packet, sent over UDP to
    the tunnel port (`ip_proto` 17) or as IP protocol `ip_proto`; `overhead` is every byte
    added on the wire, outer IP header included."""

    name: str
    prefix: bytes
    ip_proto: int
    overhead: int

    @property
    def udp(self) -> bool:
        return self.ip_proto == 17


ENCAPSULATIONS: dict[str, Encapsulation] = {
    e.name: e for e in (
        Encapsulation("vxlan", struct.pack("!II", 0x08000000, VNI << 8)
                      + TARGET_MAC + SOURCE_MAC + b"\x08\x00", 17, _IP + _UDP + 8 + 14),
        Encapsulation("fou", b"", 17, _IP + _UDP),
        Encapsulation("gre", b"\x00\x00\x08\x00", 47, _IP + 4),
        Encapsulation("ipip", b"", 4, _IP),
    )
}


def encapsulation(name: str) -> Encapsulation:
    """The encapsulation called `name`; ValueError naming the choices otherwise."""
    try:
        return ENCAPSULATIONS[name]
    except KeyError:
        raise ValueError(f"unknown tunnel {name!r} (one of {', '.join(ENCAPSULATIONS)})") from None


def inner_mtu(path_mtu: int, encap: Encapsulation) -> int:
    """The largest inner packet that crosses a path of `path_mtu` bytes whole: larger captured
    segments are split to it (never fragmented, never dropped for size)."""
    return path_mtu - encap.overhead


def max_mss(path_mtu: int, encap: Encapsulation) -> int:
    """The MSS a replayed SYN may announce: the inner MTU less 40 bytes of IPv4 and TCP."""
    return inner_mtu(path_mtu, encap) - 40
