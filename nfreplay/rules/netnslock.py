"""One lock for every nfreplay process in a network namespace, around the rule manager's
`up` and `down`.

Two owners share a table (a pod's tunnel end and colocated assist both use `raw`) and, in a
pod, start and stop at the same moment. Dropping an empty table is a look and then `nft
delete table`; without a lock, the other owner's rule inserted between the two would go with
the table. The containers of a pod share nothing but the network namespace (not /run, where
iptables keeps its own lock), so the lock is a name in it: an abstract UNIX socket address,
which the kernel keeps per network namespace and frees when its holder exits, also on
SIGKILL, so a crashed holder never leaves it taken.
"""

from __future__ import annotations

import errno
import socket
import time
from types import TracebackType

from nfreplay.errors import HostError

__all__ = ["NetnsLock"]

NAME = "nfreplay:rules"


class NetnsLock:
    """Reentrant within the process (`up` calls `down` first)."""

    def __init__(self, name: str = NAME, timeout: float = 60.0) -> None:
        self.address = "\0" + name
        self.timeout = timeout
        self._sock: socket.socket | None = None
        self._depth = 0

    def __enter__(self) -> NetnsLock:
        if self._depth:
            self._depth += 1
            return self
        deadline = time.monotonic() + self.timeout
        while True:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
            try:
                sock.bind(self.address)
            except OSError as exc:
                sock.close()
                if exc.errno != errno.EADDRINUSE:
                    raise HostError(f"the rules lock ({self.address[1:]}): "
                                    f"{exc.strerror or exc}") from None
                if time.monotonic() > deadline:
                    raise HostError(f"another nfreplay process in this network namespace held "
                                    f"the rules lock for {self.timeout:.0f} s") from None
                time.sleep(0.02)
                continue
            self._sock, self._depth = sock, 1
            return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._depth -= 1
        if self._depth == 0 and self._sock is not None:
            self._sock.close()
            self._sock = None
