"""The mirror input: a traffic mirror's VXLAN datagrams on a UDP socket, as a live capture.

`VxlanMirror` stands where `adapters.capture.Capture` stands for the online engine (the
engine's `LiveCapture`: fileno, dispatch, stats, close), so that nfreplay-online can run on a
collector host that receives copies of production's packets (AWS Traffic Mirroring, Azure
vTAP, a kernel `tc ... mirred` into a `vxlan` device) instead of capturing on production.
Which datagrams hold a client packet to replay is `proto.vxlan.MirrorFilter`'s decision; here
are the socket and the counting: every datagram is `mirror_packets` (its UDP payload
`mirror_bytes`), and one that is not handed to the engine is counted under why
(`mirror_bad`: undecodable or another VNI; `mirror_replies`: production's answers;
`mirror_other`: not for the replay; `mirror_duplicates`).
"""

from __future__ import annotations

import socket
import struct
import time
from collections.abc import Callable

from nfreplay.errors import HostError
from nfreplay.proto import vxlan
from nfreplay.session.counters import Counters

__all__ = ["VxlanMirror", "RCVBUF"]

# Linux socket options Python's socket module does not name (asm-generic/socket.h; x86 and
# arm64 use these numbers).
SO_RCVBUFFORCE = 33  # past net.core.rmem_max, with CAP_NET_ADMIN
SO_TIMESTAMPNS = 35  # each datagram's arrival time (struct timespec) as ancillary data
SO_MEMINFO = 55  # the socket's memory counters; [8] is SK_MEMINFO_DROPS
_MEMINFO = struct.Struct("=9I")
_TIMESPEC = struct.Struct("=qq")

RCVBUF = 64 << 20  # bytes the kernel may queue for us: the capture's ring is as large
_MAX_DATAGRAM = 65535


class VxlanMirror:
    """A UDP socket on `ip`:`port` receiving mirrored frames, non-blocking, select()-able.
    Counts into `counters` (the engine's) once per batch."""

    def __init__(self, ip: str, port: int, filt: vxlan.MirrorFilter, counters: Counters,
                 rcvbuf: int = RCVBUF) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            sock.bind((ip, port))
        except OSError as exc:
            sock.close()
            raise HostError(f"mirror input: cannot listen on udp {ip}:{port}: "
                            f"{exc.strerror or exc} (another collector, or a vxlan device "
                            f"with dstport {port} on this host: `ip -d link show type vxlan`)"
                            ) from None
        try:
            sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, rcvbuf)
        except OSError:  # without CAP_NET_ADMIN: as much as net.core.rmem_max allows
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        sock.setblocking(False)
        self._sock = sock
        self.filter = filt
        self.c = counters
        self.ip, self.port = sock.getsockname()[:2]  # port 0: the one the kernel chose
        self.received = 0
        # Datagrams not handed on, by verdict (-verdict is the index).
        self._tally = [0] * (1 - min(vxlan.VERDICTS))

    def describe(self) -> str:
        vni = "any VNI" if self.filter.vni < 0 else f"VNI {self.filter.vni}"
        return f"VXLAN mirror on udp {self.ip}:{self.port} ({vni})"

    def fileno(self) -> int:
        return self._sock.fileno()

    def dispatch(self, callback: Callable[[bytes, int], None],
                 on_lag: Callable[[float], None] | None = None, limit: int = -1) -> int:
        """Hand the client packets of the datagrams waiting now (at most `limit`; -1: all) to
        `callback` as (datagram, offset of the IPv4 header); returns the datagrams read.
        Before the first, `on_lag` learns how long ago the kernel received it (how far this
        reader runs behind the mirror's delivery)."""
        sock = self._sock
        recv = sock.recv
        inner = self.filter.inner
        tally = self._tally
        n = nbytes = 0
        try:
            if on_lag is not None:
                # Only the batch's first datagram pays for its ancillary data.
                buf, anc, _, _ = sock.recvmsg(_MAX_DATAGRAM, 64)
                for level, kind, data in anc:
                    if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
                        sec, nsec = _TIMESPEC.unpack_from(data)
                        on_lag(max(0.0, time.time() - (sec + nsec * 1e-9)))
                n, nbytes = 1, len(buf)
                v = inner(buf)
                if v >= 0:
                    callback(buf, v)
                else:
                    tally[-v] += 1
            while n != limit:
                buf = recv(_MAX_DATAGRAM)
                n += 1
                nbytes += len(buf)
                v = inner(buf)
                if v >= 0:
                    callback(buf, v)
                else:
                    tally[-v] += 1
        except BlockingIOError:
            pass
        finally:
            self._count(n, nbytes)
        return n

    def _count(self, n: int, nbytes: int) -> None:
        if not n:
            return
        self.received += n
        c, tally = self.c, self._tally
        c.mirror_packets += n
        c.mirror_bytes += nbytes
        c.mirror_bad += tally[-vxlan.BAD] + tally[-vxlan.OTHER_VNI]
        c.mirror_replies += tally[-vxlan.REPLY]
        c.mirror_other += tally[-vxlan.OTHER]
        c.mirror_duplicates += tally[-vxlan.DUPLICATE]
        for i in range(len(tally)):
            tally[i] = 0

    def stats(self) -> tuple[int, int, int]:
        """(datagrams received, dropped by the kernel: the socket's queue was full, 0), like
        a capture's (received, dropped, dropped by the interface)."""
        try:
            drops = _MEMINFO.unpack(self._sock.getsockopt(socket.SOL_SOCKET, SO_MEMINFO,
                                                          _MEMINFO.size))[8]
        except OSError:
            drops = 0
        return self.received, drops, 0

    def close(self) -> None:
        self._sock.close()
