"""Injection of the replayed packets: complete IPv4/TCP packets, handed either to the kernel's
IP output (a raw IPv4 socket, IP_HDRINCL: the kernel routes, resolves the next hop and fills
the IP checksum) or put on the wire at the link layer (AF_PACKET) to the next hop the kernel
would have chosen, which skips the online host's routing, netfilter and conntrack per packet
(`nfreplay.proto.nexthop` says when that is possible)."""

from __future__ import annotations

import errno
import logging
import socket
from collections.abc import Callable
from typing import Protocol

from nfreplay.errors import HostError
from nfreplay.proto import nexthop
from nfreplay.proto.nexthop import Path, choose, hop
from nfreplay.proto.tunnel import Encapsulation

log = logging.getLogger("nfreplay.online")

_SNDBUF = 8 << 20


def _count(errors: dict[str, int], exc: OSError) -> None:
    name = errno.errorcode.get(exc.errno or 0, str(exc.errno))
    errors[name] = errors.get(name, 0) + 1


class RawSender:
    """Sends IPv4 packets through the kernel as they are; counts what it refused instead of
    raising."""

    def __init__(self) -> None:
        try:
            self._s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
        except PermissionError:
            raise HostError("raw socket: permission denied (run as root or with CAP_NET_RAW)") from None
        self._s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, _SNDBUF)
        self.errors: dict[str, int] = {}

    def send(self, pkt: bytes | bytearray, dst: str) -> bool:
        try:
            self._s.sendto(pkt, (dst, 0))
            return True
        except OSError as exc:
            # EPERM (conntrack table full, a firewall), EMSGSIZE, ENOBUFS: count, keep going.
            _count(self.errors, exc)
            return False

    def refresh(self) -> None:
        """Nothing to look up again (the kernel routes each packet)."""

    def stats(self) -> dict[str, object]:
        return {"mode": "ip"}

    def close(self) -> None:
        self._s.close()


# Linux: never fragment what we send, fail it with EMSGSIZE instead (counted as a send error).
_IP_MTU_DISCOVER, _IP_PMTUDISC_DO = 10, 2


class TunnelSender:
    """Sends each packet inside a tunnel to the target host (`nfreplay.proto.tunnel`): the
    kernel writes the outer header from this host's own address and routes it like any other
    traffic of this host, so a network that drops foreign source addresses (a cloud VPC)
    carries it. One socket for every target; nothing per packet but the send."""

    def __init__(self, encap: Encapsulation, port: int) -> None:
        self.encap, self.port = encap, port
        kind = socket.SOCK_DGRAM if encap.udp else socket.SOCK_RAW
        try:
            self._s = socket.socket(socket.AF_INET, kind, 0 if encap.udp else encap.ip_proto)
        except PermissionError:
            raise HostError(f"{encap.name} tunnel socket: permission denied (run as root or "
                            "with CAP_NET_RAW)") from None
        self._s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, _SNDBUF)
        self._s.setsockopt(socket.IPPROTO_IP, _IP_MTU_DISCOVER, _IP_PMTUDISC_DO)
        if not encap.udp:
            # A raw socket of protocol 47 or 4 also receives a copy of every such packet
            # this host gets: keep that queue as small as the kernel allows; nothing reads it.
            self._s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1)
        self._prefix = encap.prefix
        self._addr_port = port if encap.udp else 0
        self.errors: dict[str, int] = {}
        self.sent_bytes = 0  # inner bytes, for the overhead figure

    def send(self, pkt: bytes | bytearray, dst: str) -> bool:
        try:
            self._s.sendto(self._prefix + pkt if self._prefix else pkt,
                           (dst, self._addr_port))
            return True
        except OSError as exc:
            # EMSGSIZE (an inner packet too large for the path: online.mtu is set too high),
            # ENOBUFS, EPERM (this host's firewall), ECONNREFUSED: count, keep going.
            _count(self.errors, exc)
            return False

    def refresh(self) -> None:
        """Nothing to look up again (the kernel routes the outer packets)."""

    def stats(self) -> dict[str, object]:
        # Text, not numbers: `--workers` sums the numbers of its workers' stats.
        e = self.encap
        outer = f"UDP port {self.port}" if e.udp else f"IP protocol {e.ip_proto}"
        return {"mode": "tunnel", "tunnel": e.name,
                "outer": f"{outer}, {e.overhead} bytes per packet"}

    def close(self) -> None:
        self._s.close()


def packet_socket(path: Path) -> socket.socket:
    """A packet socket that sends on `path`'s interface. Protocol 0: it receives nothing (no
    tap on the interface's traffic)."""
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, _SNDBUF)
        sock.bind((path.ifname, 0))
    except OSError:
        sock.close()
        raise
    return sock


class Sender(Protocol):
    errors: dict[str, int]

    def send(self, pkt: bytes | bytearray, dst: str) -> bool: ...

    def close(self) -> None: ...


class Lookup(Protocol):
    """Where packets to a destination go (`NetlinkLookup`; a fake in tests)."""

    def __call__(self, dst: str) -> Path | str: ...

    def close(self) -> None: ...


class LinkSender:
    """Sends each packet on the link to the next hop the kernel's tables name, looked up once
    per destination and again at each `refresh()` (about once a second). A destination the
    link layer cannot reach directly, and one packet after each refresh that found the
    neighbour STALE, go through `fallback` (the kernel resolves and verifies neighbours only
    for what it sends itself)."""

    def __init__(self, fallback: Sender, lookup: Lookup,
                 open_socket: Callable[[Path], socket.socket] | None = None) -> None:
        self.fallback = fallback
        self.errors = fallback.errors  # one count of refused sends, whichever way
        self._lookup = lookup
        self._open = open_socket or packet_socket
        # dst -> (socket, Ethernet header), or None: through the kernel.
        self._paths: dict[str, tuple[socket.socket, bytes] | None] = {}
        self._via: dict[str, tuple[str, int]] = {}  # dst -> its socket's key, if any
        self._why: dict[str, str] = {}  # dst -> the path, or why the kernel sends
        self._verify: set[str] = set()  # dsts whose next packet goes through the kernel
        self._socks: dict[tuple[str, int], socket.socket] = {}
        self.through_kernel = 0  # packets sent by the fallback

    def send(self, pkt: bytes | bytearray, dst: str) -> bool:
        try:
            path = self._paths[dst]
        except KeyError:
            path = self._resolve(dst)
        if path is None:
            self.through_kernel += 1
            return self.fallback.send(pkt, dst)
        if self._verify and dst in self._verify:
            self._verify.discard(dst)
            self.through_kernel += 1
            return self.fallback.send(pkt, dst)
        sock, header = path
        try:
            sock.send(header + pkt)
            return True
        except OSError as exc:
            _count(self.errors, exc)
            if exc.errno in (errno.ENXIO, errno.ENODEV, errno.ENETDOWN):
                # The interface went away or down: the kernel's way until the next refresh.
                self._paths[dst] = None
                self._via.pop(dst, None)
                self._why[dst] = f"{exc.strerror} (until the next look-up)"
            return False

    def refresh(self) -> None:
        """Look every known destination up again (routes, links and neighbours change)."""
        for dst in list(self._paths):
            self._resolve(dst)
        wanted = set(self._via.values())
        for key in [k for k in self._socks if k not in wanted]:
            self._socks.pop(key).close()

    def _resolve(self, dst: str) -> tuple[socket.socket, bytes] | None:
        try:
            found = self._lookup(dst)
        except Exception as exc:  # netlink trouble: the kernel still knows the way
            found = f"look-up failed: {exc}"
        path: tuple[socket.socket, bytes] | None = None
        self._via.pop(dst, None)
        if isinstance(found, Path):
            try:
                path = (self._socket(found), found.header)
            except OSError as exc:
                found = f"packet socket on {found.ifname}: {exc.strerror}"
            else:
                self._via[dst] = (found.ifname, found.ifindex)
                if found.verify:
                    self._verify.add(dst)
        why = found.describe() if isinstance(found, Path) else f"kernel: {found}"
        if self._why.get(dst) != why:
            log.info("packets to %s: %s", dst, why)
        self._why[dst] = why
        self._paths[dst] = path
        return path

    def _socket(self, path: Path) -> socket.socket:
        key = (path.ifname, path.ifindex)
        sock = self._socks.get(key)
        if sock is None:
            sock = self._socks[key] = self._open(path)
        return sock

    def stats(self) -> dict[str, object]:
        return {"mode": "link", "through_kernel": self.through_kernel, "paths": dict(self._why)}

    def close(self) -> None:
        for sock in self._socks.values():
            sock.close()
        self._socks.clear()
        self._lookup.close()
        self.fallback.close()


class NetlinkLookup:
    """`Lookup` from the kernel's tables, asked over rtnetlink in this network namespace
    (the messages are `nfreplay.proto.nexthop`'s; pyroute2 would cost the daemon 17 MB)."""

    TIMEOUT = 1.0  # seconds the kernel may take to answer (it answers at once)

    def __init__(self) -> None:
        self._s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC,
                                socket.NETLINK_ROUTE)
        self._s.bind((0, 0))
        self._s.settimeout(self.TIMEOUT)
        self._seq = 0

    def _ask(self, request: Callable[[int], bytes], want: int) -> bytes | None:
        """The body of the kernel's answer of type `want`, or None if it has no such entry."""
        self._seq += 1
        seq = self._seq
        self._s.send(request(seq))
        while True:  # answers to requests that timed out earlier are skipped
            try:
                got = nexthop.reply(self._s.recv(65536), seq)
            except OSError as exc:
                if exc.errno in (errno.ENOENT, errno.ENODEV, errno.ESRCH, errno.ENETUNREACH,
                                 errno.EHOSTUNREACH, errno.EINVAL):
                    return None
                raise
            if got is not None:
                kind, body = got
                return body if kind == want else None

    def __call__(self, dst: str) -> Path | str:
        body = self._ask(lambda seq: nexthop.route_request(seq, dst), nexthop.RTM_NEWROUTE)
        if body is None:
            return "no route"
        route, foreign_gateway = nexthop.parse_route(body)
        if foreign_gateway:
            return "a gateway of another address family"
        link = neighbour = None
        body = self._ask(lambda seq: nexthop.link_request(seq, route.oif), nexthop.RTM_NEWLINK)
        if body is not None:
            link = nexthop.parse_link(body)
            body = self._ask(lambda seq: nexthop.neighbour_request(seq, hop(dst, route),
                                                                   route.oif),
                             nexthop.RTM_NEWNEIGH)
            if body is not None:
                neighbour = nexthop.parse_neighbour(body)
        return choose(dst, route, link, neighbour)

    def close(self) -> None:
        self._s.close()
