"""What the session machine's transcript tests share: the addresses and ISNs of one scripted
session, packets as the capture and the assistant hand them over, and `Lab`, a session
table with a clock whose every call returns what the machine emitted."""

from __future__ import annotations

from nfreplay.proto import channel, checksum, tcpip
from nfreplay.proto.tcpip import ACK, SYN, ip2int
from nfreplay.session.machine import Announce, Counters, Params
from nfreplay.session.table import SessionTable

CLIENT = ip2int("198.18.1.10")
CPORT = 40000
ONLINE = ip2int("198.18.0.2")
TARGET = ip2int("198.18.0.3")
TPORT = 8080
ISN = 1_000_000
TISN = 0xFFFFFF00  # close to the wrap: every ACK computation crosses 2**32
OSEQ = 5_000  # the online server's ISN (client ACKs live in this space)
PARAMS = Params(target_ip=TARGET, target_port=TPORT, response_quiet=0.1,
                response_timeout=3.0, session_timeout=60.0, syn_rto=1.0, syn_retries=2,
                rto_min=0.2, rto_max=1.0, linger=2.0, ack_delay=0.0)


def ts_opt(tsval: int, tsecr: int) -> bytes:
    return b"\x01\x01\x08\x0a" + tsval.to_bytes(4, "big") + tsecr.to_bytes(4, "big")


def client(flags: int, seq: int, ack: int = 0, payload: bytes = b"", opts: bytes = b"",
           port: int = CPORT) -> tuple[tcpip.Segment, bytearray]:
    pkt = tcpip.build(CLIENT, ONLINE, port, 80, seq, ack, flags, window=502, options=opts,
                      payload=payload)
    return tcpip.parse(pkt), pkt


def record(flags: int, seq: int, ack: int, plen: int = 0, opts: bytes = b"",
           window: int = 1000, port: int = CPORT) -> tcpip.Segment:
    pkt = tcpip.build(TARGET, CLIENT, TPORT, port, seq, ack, flags, window=window,
                      options=opts, payload=b"r" * plen)
    return tcpip.parse(channel.make_record(pkt))


def view(pkt: bytearray) -> tuple[int, int, int, int, int, int, int]:
    """(dst, dport, flags, seq, ack, payload_len, src_port) of an emitted packet, checksums verified."""
    assert checksum.verify(pkt), "emitted packet has a bad checksum"
    s = tcpip.parse(pkt)
    assert s.src == CLIENT
    return s.dst, s.dport, s.flags, s.seq, s.ack, s.payload_len, s.sport


class Lab:
    """A table plus a clock; every call returns what the machine emitted."""

    def __init__(self, params: Params = PARAMS) -> None:
        self.c = Counters()
        self.t = SessionTable(params, self.c)
        self.now = 100.0

    def cl(self, flags: int, seq: int, ack: int = 0, payload: bytes = b"", opts: bytes = b"",
           port: int = CPORT) -> list:
        out: list = []
        seg, pkt = client(flags, seq, ack, payload, opts, port)
        self.t.client_packet(seg, pkt, self.now, out)
        self.t.flush(self.now, out)
        return out

    def rec(self, flags: int, seq: int, ack: int, plen: int = 0, opts: bytes = b"",
            window: int = 1000, port: int = CPORT) -> list:
        out: list = []
        self.t.response(record(flags, seq, ack, plen, opts, window, port), self.now, out)
        self.t.flush(self.now, out)
        return out

    def advance(self, dt: float) -> list:
        self.now += dt
        out: list = []
        self.t.tick(self.now, out)
        self.t.flush(self.now, out)
        return out

    def established(self, opts: bytes = b"", sa_opts: bytes = b"") -> None:
        out = self.cl(SYN, ISN, opts=opts)
        assert out[0] == Announce(CLIENT, CPORT)
        assert view(out[1])[:5] == (TARGET, TPORT, SYN, ISN, 0)
        out = self.rec(SYN | ACK, TISN, ISN + 1, opts=sa_opts)
        assert [view(p)[2:5] for p in out] == [(ACK, ISN + 1, (TISN + 1) % 2**32)]
        assert self.cl(ACK, ISN + 1, OSEQ + 1) == []  # the client's own handshake ACK

T1 = (TISN + 1) % 2**32  # first byte the target will send
