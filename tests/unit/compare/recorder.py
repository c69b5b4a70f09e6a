"""A simulated pair of recorders for the compare tests: sessions described as requests and
the two sides' responses become the packets nfreplay-online and nfreplay-assist would
record (built with ``tcpip.build``), the session lines, and, on request, the files."""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from nfreplay.proto.pcapfile import PcapngWriter
from nfreplay.proto.recording import SessionLine, encode_line, file_name
from nfreplay.proto.tcpip import ACK, FIN, PSH, SYN, build, ip2int

Endpoint = tuple[str, int]
Packet = tuple[float, bytes]

CLIENT: Endpoint = ("198.18.1.2", 40000)
SERVER: Endpoint = ("198.18.2.1", 80)
TARGET: Endpoint = ("198.18.3.1", 80)
T0 = 1_700_000_000.0
PROD_MS = 2.0  # production's response time in the simulation
TARGET_MS = 5.0  # the target's
CLOCK_SKEW = 0.0  # assistant clock minus online clock


def pkt(
    src: Endpoint, dst: Endpoint, seq: int, ack: int, flags: int, data: bytes = b""
) -> bytes:
    return bytes(build(ip2int(src[0]), ip2int(dst[0]), src[1], dst[1], seq & 0xFFFFFFFF,
                       ack & 0xFFFFFFFF, flags, payload=data))  # fmt: skip


def segments(data: bytes, mss: int) -> list[tuple[int, bytes]]:
    return [(i, data[i : i + mss]) for i in range(0, len(data), mss)]


@dataclass
class Recording:
    production: list[Packet] = field(default_factory=list)
    sent: list[Packet] = field(default_factory=list)
    replies: list[Packet] = field(default_factory=list)
    lines: list[SessionLine] = field(default_factory=list)

    def session(
        self,
        turns: Sequence[tuple[bytes, bytes, bytes | Sequence[bytes]]],
        *,
        client: Endpoint = CLIENT,
        server: Endpoint = SERVER,
        copies: Sequence[tuple[Endpoint, Endpoint]] | None = None,
        start: float = T0,
        isn: int = 1000,
        mss: int = 1400,
        pipelined: bool = False,
        skew: float = CLOCK_SKEW,
        greeting: tuple[bytes, bytes] | None = None,
    ) -> None:
        """One production session and its replayed copies. ``turns``: (request, production's
        response, the target's response, or one per copy). ``copies``: (sent_client, target)
        per copy (default: one copy, same client, TARGET). ``greeting``: what production and
        the target say first (server-first protocols)."""
        copies = list(copies) if copies is not None else [(client, TARGET)]
        for n, (sent_client, target) in enumerate(copies):
            self.lines.append(
                SessionLine(client, server, sent_client, target, n, start)
            )
        per_copy = [[t[2] if isinstance(t[2], bytes) else t[2][n] for t in turns]
                    for n in range(len(copies))]  # fmt: skip
        prod = [(t[0], t[1]) for t in turns]
        packets = self._conversation(client, server, prod, start, isn, 500_000, mss, pipelined,
                                     PROD_MS, 0.0, greeting and greeting[0])  # fmt: skip
        self.production += [(ts, p) for ts, p, _ in packets]
        for n, (sent_client, target) in enumerate(copies):
            conv = list(zip([t[0] for t in turns], per_copy[n], strict=True))
            packets = self._conversation(sent_client, target, conv, start + 0.0005, isn,
                                         9_000_000 + n, mss, pipelined, TARGET_MS, skew,
                                         greeting and greeting[1])  # fmt: skip
            for ts, p, from_client in packets:
                (self.sent if from_client else self.replies).append((ts, p))

    def _conversation(self, c: Endpoint, s: Endpoint, turns: Sequence[tuple[bytes, bytes]],
                      t: float, cisn: int, sisn: int, mss: int, pipelined: bool, ms: float,
                      skew: float, greeting: bytes | None) -> list:  # type: ignore[type-arg]  # fmt: skip
        """Packets (ts, bytes, from_client) of a whole connection; server packets get ``skew``
        added to their time (another host's clock) when they are returned to be split."""
        out: list = []  # type: ignore[type-arg]
        cseq, sseq = cisn + 1, sisn + 1

        def client(flags: int, data: bytes = b"") -> None:
            nonlocal cseq
            out.append(
                (
                    t,
                    pkt(c, s, cseq if not flags & SYN else cisn, sseq, flags, data),
                    True,
                )
            )
            cseq += len(data)

        def srv(flags: int, data: bytes = b"") -> None:
            nonlocal sseq
            out.append((t + skew, pkt(s, c, sseq if not flags & SYN else sisn, cseq, flags, data),
                        False))  # fmt: skip
            sseq += len(data)

        out.append((t, pkt(c, s, cisn, 0, SYN), True))
        t += 0.0001
        srv(SYN | ACK)
        t += 0.0001
        client(ACK)
        if greeting:
            t += 0.0001
            for _, chunk in segments(greeting, mss):
                srv(ACK | PSH, chunk)
        if pipelined:
            for req, _ in turns:
                for _, chunk in segments(req, mss):
                    t += 0.00001
                    client(ACK | PSH, chunk)
            t += ms / 1000
            for _, res in turns:
                for _, chunk in segments(res, mss):
                    srv(ACK | PSH, chunk)
                    t += 0.00001
        else:
            for req, res in turns:
                t += 0.001
                for _, chunk in segments(req, mss):
                    client(ACK | PSH, chunk)
                    t += 0.00001
                t += ms / 1000 - 0.00001
                for _, chunk in segments(res, mss):
                    srv(ACK | PSH, chunk)
                    t += 0.00001
                client(ACK)
        t += 0.001
        client(FIN | ACK)
        srv(FIN | ACK)
        cseq += 1
        client(ACK)
        return out

    def write(self, online: Path, target: Path) -> None:
        """The files the recorders would write (one of each)."""
        online.mkdir(exist_ok=True)
        target.mkdir(exist_ok=True)
        for path, packets in ((online / file_name("production", 1), self.production),
                              (online / file_name("to-target", 1), self.sent),
                              (target / file_name("target", 1), self.replies)):  # fmt: skip
            buf = io.BytesIO()
            w = PcapngWriter(buf, if_name=path.name.split("-0")[0])
            for ts, p in sorted(packets, key=lambda x: x[0]):
                w.write(ts, p)
            path.write_bytes(buf.getvalue())
        (online / file_name("sessions", 1)).write_text(
            "".join(encode_line(ln) for ln in self.lines)
        )


def http_get(path: str, host: str = "svc") -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: t\r\n\r\n".encode()


def http_ok(body: bytes, date: str = "Tue, 14 Nov 2023 22:13:20 GMT", extra: str = "",
            status: str = "200 OK") -> bytes:  # fmt: skip
    return (f"HTTP/1.1 {status}\r\nServer: nginx\r\nDate: {date}\r\nContent-Type: text/plain\r\n"
            f"Content-Length: {len(body)}\r\n{extra}\r\n").encode() + body  # fmt: skip
