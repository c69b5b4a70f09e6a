"""`LinkSender`, the online side's link-layer injection, with a scripted kernel (fake look-ups,
sockets and fallback): which packets go on the link, which through the kernel, and how it
follows route, neighbour and interface changes. Its kernel side runs for real in the lab
(tests/lab/test_replay.py)."""

from __future__ import annotations

import errno
import socket

from nfreplay.adapters.rawsock import LinkSender
from nfreplay.proto.nexthop import Path

DST = "198.18.0.3"
ETH = bytes.fromhex("0a0b0c0d0e0f020000000001") + b"\x08\x00"
PKT = bytearray(b"E" + bytes(39))


class Kernel:
    """The fallback (the raw socket): what it was given."""

    def __init__(self) -> None:
        self.errors: dict[str, int] = {}
        self.sent: list[tuple[bytes, str]] = []
        self.closed = False

    def send(self, pkt: bytes | bytearray, dst: str) -> bool:
        self.sent.append((bytes(pkt), dst))
        return True

    def close(self) -> None:
        self.closed = True


class Lookup:
    """The kernel's tables, as the test sets them."""

    def __init__(self, answer: Path | str | Exception) -> None:
        self.answer = answer
        self.calls = 0
        self.closed = False

    def __call__(self, dst: str) -> Path | str:
        self.calls += 1
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer

    def close(self) -> None:
        self.closed = True


class Sock:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.sent: list[bytes] = []
        self.fail: OSError | None = None
        self.closed = False

    def send(self, data: bytes) -> int:
        if self.fail is not None:
            raise self.fail
        self.sent.append(bytes(data))
        return len(data)

    def close(self) -> None:
        self.closed = True


def sender(answer: Path | str | Exception) -> tuple[LinkSender, Kernel, Lookup, list[Sock]]:
    kernel, lookup, socks = Kernel(), Lookup(answer), []

    def open_socket(path: Path) -> socket.socket:
        socks.append(Sock(path))
        return socks[-1]  # type: ignore[return-value]

    return LinkSender(kernel, lookup, open_socket), kernel, lookup, socks


def test_a_resolved_destination_goes_on_the_link_with_its_header() -> None:
    s, kernel, lookup, socks = sender(Path("eth0", 4, ETH, False))
    assert s.send(PKT, DST) and s.send(PKT, DST)
    assert lookup.calls == 1  # looked up once, not per packet
    assert [sock.path.ifname for sock in socks] == ["eth0"]
    assert socks[0].sent == [ETH + PKT] * 2
    assert kernel.sent == [] and s.through_kernel == 0
    assert s.stats() == {"mode": "link", "through_kernel": 0,
                         "paths": {DST: "link eth0 to 0a:0b:0c:0d:0e:0f"}}


def test_an_unresolved_neighbour_goes_through_the_kernel_until_a_refresh_finds_it() -> None:
    s, kernel, lookup, socks = sender("neighbour 198.18.0.3 not resolved yet")
    assert s.send(PKT, DST) and s.send(PKT, DST)
    assert kernel.sent == [(bytes(PKT), DST)] * 2 and s.through_kernel == 2
    assert s.stats()["paths"] == {DST: "kernel: neighbour 198.18.0.3 not resolved yet"}
    lookup.answer = Path("eth0", 4, ETH, False)
    s.refresh()
    s.send(PKT, DST)
    assert socks[0].sent == [ETH + PKT] and s.through_kernel == 2


def test_a_stale_neighbour_sends_one_packet_through_the_kernel_per_refresh() -> None:
    s, kernel, lookup, socks = sender(Path("eth0", 4, ETH, True))
    for _ in range(3):
        s.send(PKT, DST)
    assert len(kernel.sent) == 1 and len(socks[0].sent) == 2
    s.refresh()
    for _ in range(3):
        s.send(PKT, DST)
    assert len(kernel.sent) == 2 and len(socks[0].sent) == 4
    lookup.answer = Path("eth0", 4, ETH, False)  # the kernel confirmed it
    s.refresh()
    s.send(PKT, DST)
    assert len(kernel.sent) == 2 and len(socks[0].sent) == 5


def test_a_failed_look_up_leaves_the_destination_to_the_kernel() -> None:
    s, kernel, _, socks = sender(OSError("netlink went away"))
    assert s.send(PKT, DST)
    assert kernel.sent and not socks
    assert s.stats()["paths"] == {DST: "kernel: look-up failed: netlink went away"}


def test_an_interface_that_vanishes_is_left_to_the_kernel_until_the_next_refresh() -> None:
    s, kernel, lookup, socks = sender(Path("eth0", 4, ETH, False))
    s.send(PKT, DST)
    socks[0].fail = OSError(errno.ENXIO, "No such device or address")
    assert not s.send(PKT, DST)
    assert s.errors == {"ENXIO": 1}
    assert s.send(PKT, DST) and len(kernel.sent) == 1
    # It came back under another index: a new socket, the old one closed.
    lookup.answer = Path("eth0", 7, ETH, False)
    s.refresh()
    assert s.send(PKT, DST)
    assert [sock.path.ifindex for sock in socks] == [4, 7] and socks[0].closed
    assert socks[1].sent == [ETH + PKT]


def test_other_send_errors_are_counted_and_the_path_kept() -> None:
    s, kernel, _, socks = sender(Path("eth0", 4, ETH, False))
    s.send(PKT, DST)
    socks[0].fail = OSError(errno.EMSGSIZE, "Message too long")
    assert not s.send(PKT, DST)
    socks[0].fail = None
    assert s.send(PKT, DST)
    assert s.errors == {"EMSGSIZE": 1} and kernel.sent == [] and len(socks[0].sent) == 2


def test_the_errors_of_both_ways_are_one_count() -> None:
    s, kernel, _, _ = sender("a local address")
    assert s.errors is kernel.errors


def test_close_closes_sockets_look_up_and_fallback() -> None:
    s, kernel, lookup, socks = sender(Path("eth0", 4, ETH, False))
    s.send(PKT, DST)
    s.close()
    assert socks[0].closed and lookup.closed and kernel.closed


# --- TunnelSender: a real UDP socket on loopback (no root needed) ------------------------------


def test_tunnel_sender_puts_the_prefix_in_front_and_counts_what_the_kernel_refuses() -> None:
    from nfreplay.adapters.rawsock import TunnelSender
    from nfreplay.proto.tunnel import encapsulation

    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.bind(("127.0.0.1", 0))
    rx.settimeout(5)
    port = rx.getsockname()[1]
    for name in ("vxlan", "fou"):
        sender = TunnelSender(encapsulation(name), port)
        try:
            assert sender.send(PKT, "127.0.0.1")
            assert rx.recv(65536) == encapsulation(name).prefix + PKT
            assert not sender.send(bytes(70000), "127.0.0.1")  # more than a datagram holds
            assert sender.errors == {"EMSGSIZE": 1}
            assert sender.stats() == {
                "mode": "tunnel", "tunnel": name,
                "outer": f"UDP port {port}, {encapsulation(name).overhead} bytes per packet"}
        finally:
            sender.close()
    rx.close()
