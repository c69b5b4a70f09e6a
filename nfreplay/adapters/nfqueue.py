"""NFQUEUE through NetfilterQueue: bind a queue, hand each packet's header bytes to a
callback that must return whether to accept it; every packet gets exactly one verdict."""

from __future__ import annotations

from collections.abc import Callable

from nfreplay.errors import HostError

# IPv4 header with options (60) + TCP header with options (60): all a record ever needs.
COPY_RANGE = 128


class Queue:
    """A bound NFQUEUE. `callback(header_bytes) -> bool` (True = ACCEPT). Any exception from
    the callback means DROP and is counted: a leaked reply would reach a real client."""

    def __init__(self, number: int, callback: Callable[[bytes], bool],
                 max_len: int = 8192, sock_len: int = 32 << 20) -> None:
        try:
            from netfilterqueue import NetfilterQueue  # type: ignore[import-not-found]
        except ImportError as exc:  # pragma: no cover - packaging problem
            raise HostError(f"nfqueue: NetfilterQueue is not installed ({exc})") from None
        self.errors = 0
        self.number = number
        self._nfq = NetfilterQueue()

        def verdict(pkt: object) -> None:
            accept = False
            try:
                accept = callback(pkt.get_payload())  # type: ignore[attr-defined]
            except Exception:
                self.errors += 1
            finally:
                if accept:
                    pkt.accept()  # type: ignore[attr-defined]
                else:
                    pkt.drop()  # type: ignore[attr-defined]

        try:
            self._nfq.bind(number, verdict, max_len=max_len, range=COPY_RANGE, sock_len=sock_len)
        except OSError as exc:
            raise HostError(f"nfqueue: cannot bind queue {number} ({exc}; another process "
                            "may hold it, or NFQUEUE is missing from the kernel)") from None
        self._fd = self._nfq.get_fd()

    def fileno(self) -> int:
        return int(self._fd)

    def drain(self) -> None:
        """Handle every packet queued now (non-blocking)."""
        self._nfq.run(block=False)

    def close(self) -> None:
        self._nfq.unbind()
