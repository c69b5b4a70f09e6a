"""libpcap capture through pcapy-ng (its wheel bundles libpcap; measured fastest here).

The adapter hands raw IPv4 packets (link header stripped) to a callback, in batches per
wake-up. Link types: those capture files have (`nfreplay.proto.link`, the same decoder).
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from nfreplay.errors import HostError
from nfreplay.proto.link import SUPPORTED_LINKTYPES, stripper

# pcap_activate() results (pcap/pcap.h); pcapy-ng returns them instead of raising.
_ACTIVATE_ERRORS = {
    -5: "no such device",
    -8: "permission denied (run as root or with CAP_NET_RAW)",
    -9: "the interface is down",
    -10: "cannot capture on this kind of device",
}


class Capture:
    """A live capture of one interface with a BPF filter, non-blocking, select()-able."""

    def __init__(self, interface: str, bpf: str, snaplen: int = 65535,
                 buffer_size: int = 64 << 20, inbound_only: bool = True) -> None:
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
            # Only what arrives: our own injected packets must never be captured again (the
            # response recorder wants both directions, and sorts them itself).
            if inbound_only:
                p.setdirection(pcapy.PCAP_D_IN)
        except pcapy.PcapError as exc:
            raise HostError(f"capture on {interface!r}: {exc}") from None
        dlt = p.datalink()
        strip = stripper(dlt)
        if strip is None:
            p.close()
            raise HostError(f"capture on {interface!r}: unsupported link type {dlt} "
                            f"(nfreplay reads {', '.join(sorted(set(SUPPORTED_LINKTYPES.values())))})")
        self._p = p
        self.interface = interface
        self.strip = strip

    def fileno(self) -> int:
        return int(self._p.getfd())

    def dispatch(self, callback: Callable[[bytes, int], None],
                 on_lag: Callable[[float], None] | None = None, limit: int = -1) -> int:
        """Deliver the packets available now, at most `limit` (-1: all, however many ring
        blocks that is), as (frame, ip_offset); returns the count. Before the first packet,
        `on_lag` learns how many seconds ago it was captured (how far the reader runs behind
        the wire)."""
        strip = self.strip
        first = [on_lag is not None]

        def cb(hdr: object, frame: bytes) -> None:
            if first[0]:
                first[0] = False
                sec, usec = hdr.getts()  # type: ignore[attr-defined]
                on_lag(time.time() - (sec + usec * 1e-6))  # type: ignore[misc]
            off = strip(frame, 0, len(frame))
            if off >= 0:
                callback(frame, off)

        return int(self._p.dispatch(limit, cb))

    def dispatch_ts(self, callback: Callable[[float, bytes], None], limit: int = -1) -> int:
        """Deliver the packets available now as (capture time, IPv4 packet), for a recorder
        (a copy of each packet: cheap enough off the replay path)."""
        strip = self.strip

        def cb(hdr: object, frame: bytes) -> None:
            off = strip(frame, 0, len(frame))
            if off >= 0:
                sec, usec = hdr.getts()  # type: ignore[attr-defined]
                callback(sec + usec * 1e-6, frame[off:])

        return int(self._p.dispatch(limit, cb))

    def stats(self) -> tuple[int, int, int]:
        """(received, dropped by the kernel, dropped by the interface), as libpcap reports."""
        return tuple(self._p.stats())  # type: ignore[return-value]

    def close(self) -> None:
        self._p.close()
