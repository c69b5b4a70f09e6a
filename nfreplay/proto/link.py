"""Link layers: where the IPv4 packet starts in a frame, for capture files and live capture
alike (one decoder, so a frame a file can replay is one the live capture can too).

A link type is the pcap LINKTYPE_ number, which for the types below is also the DLT_ number
libpcap reports for a live capture (raw IP: 12 or 14 live, 101 in files). A stripper takes
(buffer, start of frame, end of frame) and returns the offset of the IPv4 header in the
buffer, NOT_IPV4 for another protocol or SHORT if the frame cannot hold its link header.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

__all__ = ["SUPPORTED_LINKTYPES", "FIXED_TYPE_FIELD", "NOT_IPV4", "SHORT", "Strip", "stripper"]

LINKTYPE_NULL = 0  # BSD loopback: 4-byte address family in the capturing host's byte order
LINKTYPE_ETHERNET = 1
LINKTYPE_RAW_OPENBSD = 12  # DLT_RAW as OpenBSD (and libpcap on some systems) numbers it
LINKTYPE_RAW_LINUX = 14  # DLT_RAW as BSD/OS and some Linux builds number it
LINKTYPE_RAW = 101  # raw IPv4 or IPv6, the version nibble tells
LINKTYPE_LINUX_SLL = 113  # Linux cooked v1 ("any" device), 16-byte header
LINKTYPE_IPV4 = 228  # raw IPv4 only
LINKTYPE_LINUX_SLL2 = 276  # Linux cooked v2, 20-byte header

SUPPORTED_LINKTYPES: Final[dict[int, str]] = {
    LINKTYPE_NULL: "null/loopback",
    LINKTYPE_ETHERNET: "ethernet",
    LINKTYPE_RAW_OPENBSD: "raw",
    LINKTYPE_RAW_LINUX: "raw",
    LINKTYPE_RAW: "raw",
    LINKTYPE_LINUX_SLL: "linux-sll",
    LINKTYPE_IPV4: "ipv4",
    LINKTYPE_LINUX_SLL2: "linux-sll2",
}

_ETH_IPV4 = 0x0800
_AF_INET = 2  # the same on every system that writes LINKTYPE_NULL captures

NOT_IPV4 = -1
SHORT = -2
Strip = Callable[[bytes, int, int], int]


def _strip_ethernet(buf: bytes, start: int, end: int) -> int:
    p = start + 12
    if p + 2 > end:
        return SHORT
    etype = buf[p] << 8 | buf[p + 1]
    # 802.1Q, 802.1ad and the pre-standard QinQ type; stacks of any depth.
    while etype == 0x8100 or etype == 0x88A8 or etype == 0x9100:
        p += 4
        if p + 2 > end:
            return SHORT
        etype = buf[p] << 8 | buf[p + 1]
    return p + 2 if etype == _ETH_IPV4 else NOT_IPV4


def _strip_sll(buf: bytes, start: int, end: int) -> int:
    if start + 16 > end:
        return SHORT
    return start + 16 if (buf[start + 14] << 8 | buf[start + 15]) == _ETH_IPV4 else NOT_IPV4


def _strip_sll2(buf: bytes, start: int, end: int) -> int:
    if start + 20 > end:
        return SHORT
    return start + 20 if (buf[start] << 8 | buf[start + 1]) == _ETH_IPV4 else NOT_IPV4


def _strip_raw(buf: bytes, start: int, end: int) -> int:
    if start >= end:
        return SHORT
    return start if buf[start] >> 4 == 4 else NOT_IPV4


def _strip_null(buf: bytes, start: int, end: int) -> int:
    if start + 4 > end:
        return SHORT
    # The family is in the byte order of the host that captured, which the file does not say;
    # AF_INET is 2 everywhere, so either order of 2 is IPv4.
    b0, b1, b2, b3 = buf[start], buf[start + 1], buf[start + 2], buf[start + 3]
    if (b0 == _AF_INET and not (b1 | b2 | b3)) or (b3 == _AF_INET and not (b0 | b1 | b2)):
        return start + 4
    return NOT_IPV4


_STRIPPERS: Final[dict[int, Strip]] = {
    LINKTYPE_NULL: _strip_null,
    LINKTYPE_ETHERNET: _strip_ethernet,
    LINKTYPE_RAW_OPENBSD: _strip_raw,
    LINKTYPE_RAW_LINUX: _strip_raw,
    LINKTYPE_RAW: _strip_raw,
    LINKTYPE_LINUX_SLL: _strip_sll,
    LINKTYPE_IPV4: _strip_raw,
    LINKTYPE_LINUX_SLL2: _strip_sll2,
}


# Link types whose IPv4 frames have a fixed-length header: (offset of the 16-bit type field that
# holds 0x0800, header length). Everything else goes through its strip function.
FIXED_TYPE_FIELD: Final[dict[int, tuple[int, int]]] = {
    LINKTYPE_ETHERNET: (12, 14),
    LINKTYPE_LINUX_SLL: (14, 16),
    LINKTYPE_LINUX_SLL2: (0, 20),
}


def stripper(linktype: int) -> Strip | None:
    """The stripper of `linktype`, None if nfreplay cannot read it."""
    return _STRIPPERS.get(linktype)
