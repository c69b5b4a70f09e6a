"""Layer-3 injection with a raw IPv4 socket (IP_HDRINCL): the kernel routes, resolves the
next hop and fills the IP checksum; we hand it complete IPv4/TCP packets."""

from __future__ import annotations

import errno
import socket

from nfreplay.errors import HostError


class RawSender:
    """Sends IPv4 packets as they are; counts what the kernel refused instead of raising."""

    def __init__(self) -> None:
        try:
            self._s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
        except PermissionError:
            raise HostError("raw socket: permission denied (run as root or with CAP_NET_RAW)") from None
        self._s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 8 << 20)
        self.errors: dict[str, int] = {}

    def send(self, pkt: bytes | bytearray, dst: str) -> bool:
        try:
            self._s.sendto(pkt, (dst, 0))
            return True
        except OSError as exc:
            # EPERM (conntrack table full, a firewall), EMSGSIZE, ENOBUFS: count, keep going.
            name = errno.errorcode.get(exc.errno or 0, str(exc.errno))
            self.errors[name] = self.errors.get(name, 0) + 1
            return False

    def close(self) -> None:
        self._s.close()
