"""libpcap capture through pcapy-ng (its wheel bundles libpcap; measured fastest here).

The adapter hands raw IPv4 packets (link header stripped) to a callback, in batches per
wake-up. Link types: Ethernet (with 802.1Q/802.1ad tags), Linux cooked v1 ("any"), raw IP.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from struct import Struct

from nfreplay.errors import HostError

DLT_EN10MB = 1
DLT_RAW = 12  # OpenBSD value; libpcap maps LINKTYPE_RAW to it on Linux as 12 or 14
DLT_RAW_ALT = 14
DLT_LINUX_SLL = 113
LINKTYPE_RAW = 101
_ETH_IP = 0x0800
_VLAN_TYPES = (0x8100, 0x88A8)
_U16 = Struct("!H")
# pcap_activate() results (pcap/pcap.h); pcapy-ng returns them instead of raising.
_ACTIVATE_ERRORS = {
    -5: "no such device",
    -8: "permission denied (run as root or with CAP_NET_RAW)",
    -9: "the interface is down",
    -10: "cannot capture on this kind of device",
}


def link_offset(dlt: int) -> Callable[[bytes], int]:
    """A function giving the offset of the IPv4 header in a frame, or -1 if not IPv4."""
    if dlt == DLT_EN10MB:
        def eth(frame: bytes) -> int:
            off = 12
            etype = _U16.unpack_from(frame, off)[0]
            while etype in _VLAN_TYPES:
                off += 4
                etype = _U16.unpack_from(frame, off)[0]
            return off + 2 if etype == _ETH_IP else -1
        return eth
    if dlt == DLT_LINUX_SLL:
        return lambda frame: 16 if _U16.unpack_from(frame, 14)[0] == _ETH_IP else -1
    if dlt in (DLT_RAW, DLT_RAW_ALT, LINKTYPE_RAW):
        return lambda frame: 0 if frame[0] >> 4 == 4 else -1
    raise HostError(f"capture: unsupported link type {dlt}")


class Capture:
    """A live capture of one interface with a BPF filter, non-blocking, select()-able."""

    def __init__(self, interface: str, bpf: str, snaplen: int = 65535,
                 buffer_size: int = 64 << 20) -> None:
        try:
            import pcapy
        except ImportError as exc:  # pragma: no cover - packaging problem
            raise HostError(f"capture: pcapy-ng is not installed ({exc})") from None
        if interface != "any":
            try:
                socket.if_nametoindex(interface)
            except OSError:
                raise HostError(f"capture: no interface {interface!r} here "
                                "(`ip link` lists them; \"any\" captures on all)") from None
        try:
            p = pcapy.create(interface)
            p.set_snaplen(snaplen)
            p.set_promisc(0)
            # TPACKET_V3 hands over a block when it is full or this old (ms). A block is
            # 256 KiB whatever it holds, so a short timeout turns the buffer into a few
            # hundred mostly empty blocks (1 ms: ~150 ms of traffic before drops, measured);
            # 10 ms, intercept's pcap timeout too, buffers ~1.3 s at low rates and costs at
            # most 10 ms of replay delay.
            p.set_timeout(10)
            p.set_buffer_size(buffer_size)
            status = p.activate()
            if status is not None and status < 0:
                why = _ACTIVATE_ERRORS.get(status, f"libpcap error {status}")
                raise HostError(f"capture on {interface!r}: {why}")
            p.setfilter(bpf)
            p.setnonblock(1)
            # Only what arrives: our own injected packets must never be captured again.
            p.setdirection(pcapy.PCAP_D_IN)
        except pcapy.PcapError as exc:
            raise HostError(f"capture on {interface!r}: {exc}") from None
        self._p = p
        self.interface = interface
        self.offset = link_offset(p.datalink())

    def fileno(self) -> int:
        return int(self._p.getfd())

    def dispatch(self, callback: Callable[[bytes, int], None],
                 on_lag: Callable[[float], None] | None = None, limit: int = -1) -> int:
        """Deliver the packets available now, at most `limit` (-1: all, however many ring
        blocks that is), as (frame, ip_offset); returns the count. Before the first packet,
        `on_lag` learns how many seconds ago it was captured (how far the reader runs behind
        the wire)."""
        offset = self.offset
        first = [on_lag is not None]

        def cb(hdr: object, frame: bytes) -> None:
            if first[0]:
                first[0] = False
                sec, usec = hdr.getts()  # type: ignore[attr-defined]
                on_lag(time.time() - (sec + usec * 1e-6))  # type: ignore[misc]
            off = offset(frame)
            if off >= 0:
                callback(frame, off)

        return int(self._p.dispatch(limit, cb))

    def stats(self) -> tuple[int, int, int]:
        """(received, dropped by the kernel, dropped by the interface), as libpcap reports."""
        return tuple(self._p.stats())  # type: ignore[return-value]

    def close(self) -> None:
        self._p.close()
