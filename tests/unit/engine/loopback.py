"""A real OnlineEngine wired to loopback sockets (its control channel to a real listener), with
a scripted capture, sender and clock: what the engine's step tests share."""

from __future__ import annotations

import socket
from collections.abc import Callable

from nfreplay.adapters.channel import Assistant
from nfreplay.engine.assist import AssistEngine
from nfreplay.engine.online import OnlineEngine
from nfreplay.proto import channel, tcpip
from nfreplay.proto.tcpip import ACK, SYN, ip2int
from nfreplay.session.machine import Params
from tests.unit.sockets import recv_exact

CLIENT, ONLINE, TARGET = ip2int("198.18.1.10"), ip2int("198.18.0.2"), ip2int("198.18.0.3")
CPORT = 40000
TISN = 5000
ETH = bytes(12) + b"\x08\x00"
WAIT = 2.0  # seconds any wait below may take before the test fails
ADD = channel.encode_client_add(CLIENT, CPORT, TARGET, 80)
PARAMS = Params(target_ip=TARGET, target_port=80, ack_delay=0.0)  # ACKs at once: no timer


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


class FakeCapture:
    """A live capture: readable (a socketpair byte) while frames wait; `dispatch` hands them
    over like adapters.capture.Capture (frame, IP offset)."""

    def __init__(self) -> None:
        self._r, self._w = socket.socketpair()
        self._r.setblocking(False)
        self.frames: list[bytes] = []

    def fileno(self) -> int:
        return self._r.fileno()

    def put(self, frame: bytes) -> None:
        self.frames.append(frame)
        self._w.send(b"!")

    def dispatch(self, callback: Callable[[bytes, int], None],
                 on_lag: Callable[[float], None] | None = None, limit: int = -1) -> int:
        try:
            self._r.recv(4096)
        except BlockingIOError:
            pass
        n = 0
        while self.frames and (limit < 0 or n < limit):
            if on_lag is not None and n == 0:
                on_lag(0.0)
            callback(self.frames.pop(0), len(ETH))
            n += 1
        return n

    def close(self) -> None:
        self._r.close()
        self._w.close()


class FakeSender:
    """Records what is sent; `before_send` runs first (to look at the control channel)."""

    def __init__(self) -> None:
        self.sent: list[bytes] = []
        self.before_send: Callable[[bytes], None] | None = None

    def send(self, pkt: bytes, dst: str) -> bool:
        assert dst == "198.18.0.3"
        if self.before_send is not None:
            self.before_send(bytes(pkt))
        self.sent.append(bytes(pkt))
        return True


def frame(flags: int, seq: int, ack: int = 0, payload: bytes = b"",
          port: int = CPORT) -> bytes:
    return ETH + bytes(tcpip.build(CLIENT, ONLINE, port, 80, seq, ack, flags, payload=payload))


def target_record(flags: int, seq: int, ack: int, plen: int = 0, port: int = CPORT) -> bytes:
    return channel.make_record(tcpip.build(TARGET, CLIENT, 80, port, seq, ack, flags,
                                           payload=b"r" * plen))


def steps(e: OnlineEngine | AssistEngine, cond: Callable[[], object], what: str,
          n: int = 100, timeout: float = 0.02) -> None:
    """Step until `cond` holds; fail loudly if it never does."""
    for _ in range(n):
        e.step(timeout)
        if cond():
            return
    raise AssertionError(f"not after {n} steps: {what}")


# ------------------------------------------------------------------ the online engine


class Online:
    """An OnlineEngine with one assistant (one connection) played by a plain socket."""

    def __init__(self) -> None:
        self.server = socket.socket()
        self.server.bind(("127.0.0.1", 0))
        self.server.listen(4)
        self.server.settimeout(WAIT)
        self.clock = Clock()
        self.capture = FakeCapture()
        self.sender = FakeSender()
        self.assistant = Assistant("127.0.0.1", self.server.getsockname()[1], 1)
        self.e = OnlineEngine(PARAMS, self.capture,
                              self.sender, [self.assistant], clock=self.clock,
                              reconnect_interval=2.0, connect_timeout=3.0)
        self.peers: list[socket.socket] = []

    @property
    def peer(self) -> socket.socket:
        return self.peers[-1]

    def up(self) -> bytes:
        """Step until the control connection is up; accept it; return the first bytes it
        sent (the version message)."""
        steps(self.e, lambda: self.e.channel_up == 1, "the control connection up")
        peer, _ = self.server.accept()
        self.peers.append(peer)
        return recv_exact(peer, channel.MSG_SIZE)

    def send_records(self, *records: bytes) -> None:
        self.peer.sendall(channel.encode_frames(list(records)))

    def established(self) -> None:
        """A SYN captured and sent, the target's SYN-ACK returned: the session is open."""
        self.capture.put(frame(SYN, 100))
        steps(self.e, lambda: len(self.sender.sent) == 1, "the SYN sent")
        assert recv_exact(self.peer, channel.MSG_SIZE) == ADD
        self.send_records(target_record(SYN | ACK, TISN, 101))
        steps(self.e, lambda: len(self.sender.sent) == 2, "the handshake's ACK sent")

    def close(self) -> None:
        for p in self.peers:
            p.close()
        self.e.shutdown()
        self.capture.close()
        self.server.close()
