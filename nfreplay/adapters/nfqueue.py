"""NFQUEUE through NetfilterQueue: bind a queue, hand each packet's header bytes to a
callback that must return whether to accept it; every packet gets exactly one verdict."""

from __future__ import annotations

from collections.abc import Callable

from nfreplay.errors import HostError

# IPv4 header with options (60) + TCP header with options (60): all a record ever needs.
COPY_RANGE = 128


class Verdicts:
    """Wraps `callback(header_bytes) -> bool` (True = ACCEPT) so that each packet gets exactly
    one verdict and any exception means DROP, counted in `errors`: a reply let through by a
    bug would reach a real client."""

    def __init__(self, callback: Callable[[bytes], bool]) -> None:
        self.callback = callback
        self.errors = 0

    def __call__(self, pkt: object) -> None:
        accept = False
        try:
            accept = self.callback(pkt.get_payload())  # type: ignore[attr-defined]
        except Exception:
            self.errors += 1
        if accept:
            pkt.accept()  # type: ignore[attr-defined]
        else:
            pkt.drop()  # type: ignore[attr-defined]


class Queue:
    """A bound NFQUEUE whose packets go through `Verdicts(callback)`."""

    def __init__(self, number: int, callback: Callable[[bytes], bool],
                 max_len: int = 8192, sock_len: int = 32 << 20,
                 copy_range: int = COPY_RANGE) -> None:
        """`copy_range`: bytes of each packet copied to us (the headers; the whole packet
        only while responses are recorded)."""
        try:
            from netfilterqueue import NetfilterQueue  # type: ignore[import-not-found]
        except ImportError as exc:  # pragma: no cover - packaging problem
            raise HostError(f"nfqueue: NetfilterQueue is not installed ({exc})") from None
        self.number = number
        self.verdicts = Verdicts(callback)
        self._nfq = NetfilterQueue()
        try:
            self._nfq.bind(number, self.verdicts, max_len=max_len, range=copy_range,
                           sock_len=sock_len)
        except OSError as exc:
            raise HostError(f"nfqueue: cannot bind queue {number} ({exc}; another process "
                            "may hold it, or NFQUEUE is missing from the kernel)") from None
        self._fd = self._nfq.get_fd()

    @property
    def errors(self) -> int:
        return self.verdicts.errors

    def fileno(self) -> int:
        return int(self._fd)

    def drain(self) -> None:
        """Handle every packet queued now (non-blocking)."""
        self._nfq.run(block=False)

    def close(self) -> None:
        self._nfq.unbind()
