"""Route-change notifications: a netlink socket subscribed to rtnetlink's link, IPv4 address,
IPv4 route and IPv4 rule multicast groups, in the calling process's network namespace.

The messages are not parsed: any of them only means "look again", and the caller compares the
kernel's state with what it wants. A lost notification (the socket's buffer overflowed,
ENOBUFS) means the same, so nothing can be missed by not reading fast enough.
"""

from __future__ import annotations

import errno
import socket

__all__ = ["RouteEvents"]

_NETLINK_ROUTE = 0
# <linux/rtnetlink.h>: RTMGRP_LINK, RTMGRP_IPV4_IFADDR, RTMGRP_IPV4_ROUTE, RTMGRP_IPV4_RULE.
_GROUPS = 0x1 | 0x10 | 0x40 | 0x80


class RouteEvents:
    """`fileno()` turns readable when links, addresses, routes or rules changed; `drain()`
    empties the socket and says how many notifications (or overflows) it found."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_NONBLOCK,
                                  _NETLINK_ROUTE)
        try:
            self.sock.bind((0, _GROUPS))
        except OSError:
            self.sock.close()
            raise

    def fileno(self) -> int:
        return self.sock.fileno()

    def drain(self) -> int:
        seen = 0
        while True:
            try:
                self.sock.recv(65536)
            except BlockingIOError:
                return seen
            except OSError as exc:
                if exc.errno != errno.ENOBUFS:  # overflow: notifications lost, look again
                    raise
            seen += 1

    def close(self) -> None:
        self.sock.close()
