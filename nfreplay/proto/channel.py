"""The tcpcopy 1.3 / intercept 1.0 control channel, default build profile (combined, not single,
no payload).

Online side (tcpcopy's role) → assist side (intercept's role), TCP port 36524: first one version
message, then a 14-byte ``CLIENT_ADD`` per new session::

    clt_ip:4 clt_port:2 type:2 target_ip:4 target_port:2      all network byte order

Assist side → online side: frames of ``count:2`` (big-endian, 1..16) followed by ``count``
64-byte records. A record is the response's first 20 IPv4 header bytes, then its TCP header (cut
at 44 bytes), then zeros. There is no payload and no length field: the receiver computes the
payload length from ``tot_len``.

**nfreplay extension** (negotiated, so a tcpcopy or an intercept never sees it): nfreplay-online
puts ``EXT_MAGIC`` and its feature bits in the version message's target fields, which tcpcopy
sends as zeros and intercept reads and ignores (reference §1.3). An nfreplay-assist that knows
the extension answers with a ``NOTICE_HELLO`` notice; only then, and only on that connection,
it sends further notices. A notice is a 64-byte record inside an ordinary frame whose first
byte is 0 (a real record starts with 0x45, IPv4)::

    0:1 zero   1:2 kind   2:4 features   4:18 the CLIENT_ADD it is about
    18:22 EXT_MAGIC   22:64 zeros

``NOTICE_COLLIDED``: the CLIENT_ADD was refused, another online host holds that client
address and port towards the target right now (its session is live there).

Both directions are byte streams, so the decoders accept data split at any byte. Bad bytes from
the peer raise ``WireError``, after which the connection must be closed. Misusing the API (a
wrong record size, a decoder used after it failed) raises ``ValueError``.
"""

from collections.abc import Sequence
from struct import Struct, error as StructError
from typing import NamedTuple

from nfreplay.errors import WireError

__all__ = [
    "DEFAULT_PORT", "VERSION", "MSG_SIZE", "MSG_MIN_SIZE", "RECORD_SIZE", "COMB_MAX",
    "TYPE_CLIENT_ADD", "TYPE_CLIENT_DEL", "MAX_TCP_HEADER_IN_RECORD",
    "ClientMessage", "encode_version", "encode_client_add", "MessageDecoder",
    "make_record", "encode_frame", "encode_frames", "FrameDecoder",
    "EXT_MAGIC", "FEATURE_NOTICES", "NOTICE_HELLO", "NOTICE_COLLIDED", "encode_notice",
    "parse_notice", "encode_client_del",
]  # fmt: skip

_Buffer = bytes | bytearray | memoryview

DEFAULT_PORT = 36524
VERSION = 6  # INTERNAL_VERSION of tcpcopy 1.3.0 / intercept 1.0.0
MSG_SIZE = 14
MSG_MIN_SIZE = 8  # intercept reads this much first and checks it (the pre-1.0 message layout)
RECORD_SIZE = 64
COMB_MAX = 16
TYPE_CLIENT_ADD = 1
TYPE_CLIENT_DEL = 2  # defined by tcpcopy but never sent; intercept ignores it
MAX_TCP_HEADER_IN_RECORD = 44  # RECORD_SIZE - 20 (IPv4 header)
EXT_MAGIC = 0x4E465250  # "NFRP" in the version message's target ip: the nfreplay extension
FEATURE_NOTICES = 0x0001  # the online side reads notices (NOTICE_*)
NOTICE_HELLO = 0  # the assist side speaks the extension on this connection
NOTICE_COLLIDED = 1  # a CLIENT_ADD refused: another online host holds that client ip:port

_MSG = Struct("!IHHIH")
_MSG_OLD = Struct("!IHH")
_VERSION_MSG = _MSG.pack(0, 0, VERSION, 0, 0)
_COUNT = Struct("!H")
_MAGIC = EXT_MAGIC.to_bytes(4, "big")
_ZEROS = bytes(RECORD_SIZE)
# vihl, tot_len, frag, proto: what make_record checks and changes in the IPv4 header.
_REC_IP = Struct("!BxH2xHxB")


class ClientMessage(NamedTuple):
    """A decoded online→assist message. Values are host-order ints; ``type`` is
    ``TYPE_CLIENT_ADD``, ``TYPE_CLIENT_DEL`` or an unknown value (the caller logs it)."""

    clt_ip: int
    clt_port: int
    type: int
    target_ip: int
    target_port: int


def encode_version(features: int = 0) -> bytes:
    """The version message the online side sends first on every new connection; with
    `features`, the nfreplay extension's offer in its (otherwise zero) target fields."""
    if not features:
        return _VERSION_MSG
    return _MSG.pack(0, 0, VERSION, EXT_MAGIC, features)


def encode_client_del(clt_ip: int, clt_port: int, target_ip: int, target_port: int) -> bytes:
    """``CLIENT_DEL``: the session announced by the same CLIENT_ADD is over (tcpcopy defines
    it and never sends it; intercept ignores it; nfreplay-online sends it only on connections
    that speak the extension)."""
    return _MSG.pack(clt_ip, clt_port, TYPE_CLIENT_DEL, target_ip, target_port)


def encode_notice(kind: int, about: bytes = bytes(MSG_SIZE), features: int = 0) -> bytes:
    """A notice record (assist → online, extension only) about the 14-byte message `about`."""
    if len(about) != MSG_SIZE:
        raise ValueError(f"encode_notice: a message is {MSG_SIZE} bytes, not {len(about)}")
    return (bytes((0, kind)) + features.to_bytes(2, "big") + about + _MAGIC
            + _ZEROS[8 + MSG_SIZE:])


def parse_notice(record: bytes) -> tuple[int, int, ClientMessage]:
    """(kind, features, the message it is about) of a notice record (first byte 0)."""
    if len(record) != RECORD_SIZE or record[0] or record[18:22] != _MAGIC:
        raise WireError("not a notice record")
    return (record[1], record[2] << 8 | record[3],
            ClientMessage._make(_MSG.unpack_from(record, 4)))


def encode_client_add(clt_ip: int, clt_port: int, target_ip: int, target_port: int) -> bytes:
    """The ``CLIENT_ADD`` message for a session. It gives the client address as the target
    sees it (after any rewriting) and the target address. Raises ``ValueError`` if a value is
    out of range."""
    try:
        return _MSG.pack(clt_ip, clt_port, TYPE_CLIENT_ADD, target_ip, target_port)
    except StructError as exc:
        raise ValueError(f"encode_client_add: field out of range: {exc}") from None


class MessageDecoder:
    """Decodes the online→assist stream of one accepted connection (the assist side).

    Call ``feed`` with whatever ``recv`` returned. The version handshake is consumed and never
    returned. After it, ``version`` holds the peer's version and ``version_mismatch`` tells the
    caller to log a warning. Intercept accepts a mismatch too, because the version is advisory.
    """

    __slots__ = ("_buf", "_handshake_done", "_failed", "version", "features")

    def __init__(self) -> None:
        self._buf = bytearray()
        self._handshake_done = False
        self._failed = False
        #: The peer's protocol version once its first 8 bytes have arrived, else ``None``.
        self.version: int | None = None
        #: The nfreplay extension's features the peer offered in its version message (0: a
        #: tcpcopy, or an nfreplay-online that does not offer any).
        self.features = 0

    @property
    def greeted(self) -> bool:
        """The peer's version message is complete."""
        return self._handshake_done

    @property
    def buffered(self) -> int:
        """Bytes of an incomplete message received so far (the version message included)."""
        return len(self._buf)

    @property
    def version_mismatch(self) -> bool:
        """True if the peer announced a version other than ``VERSION``."""
        return self.version is not None and self.version != VERSION

    def feed(self, data: _Buffer) -> list[ClientMessage]:
        """Add received bytes and return the messages they complete, in order.

        Raises ``WireError`` if the first message is not a version message. The decoder is then
        unusable, and a further ``feed`` raises ``ValueError``.
        """
        if self._failed:
            raise ValueError("MessageDecoder.feed after a WireError; close the connection")
        buf = self._buf
        buf += data
        n = len(buf)
        pos = 0
        if not self._handshake_done:
            if self.version is None:
                # Like intercept, decide on the first 8 bytes alone. An old client that sends
                # one 8-byte message and waits is then rejected at once, not left hanging.
                if n < MSG_MIN_SIZE:
                    return []
                clt_ip, clt_port, version = _MSG_OLD.unpack_from(buf)
                if clt_ip or clt_port:
                    self._failed = True
                    raise WireError("peer too old: first message is not a version message")
                self.version = version
            if n < MSG_SIZE:
                return []
            # Bytes 8..13 (target fields) of the version message are zero from tcpcopy; the
            # nfreplay extension's offer from nfreplay-online.
            _, _, _, magic, features = _MSG.unpack_from(buf)
            if magic == EXT_MAGIC:
                self.features = features
            pos = MSG_SIZE
            self._handshake_done = True
        out = []
        while n - pos >= MSG_SIZE:
            out.append(ClientMessage._make(_MSG.unpack_from(buf, pos)))
            pos += MSG_SIZE
        if pos:
            del buf[:pos]
        return out


def make_record(pkt: _Buffer, off: int = 0) -> bytes:
    """The 64-byte record for the response packet at ``pkt[off:]`` (the assist side).

    Layout: the 20-byte IPv4 header, then the TCP header (cut at 44 bytes), then zero padding.
    ``tot_len`` keeps the original size (minus stripped IPv4 options), so the receiver still
    learns the payload length. Raises ``WireError`` if the packet is not IPv4/TCP or is shorter
    than its headers.
    """
    have = len(pkt) - off
    if have < 40:
        raise WireError(f"response too short for IPv4+TCP headers: {max(have, 0)} bytes")
    vihl, tot_len, frag, proto = _REC_IP.unpack_from(pkt, off)
    ihl = (vihl & 0x0F) << 2
    if vihl >> 4 != 4 or ihl < 20:
        raise WireError(f"response is not a valid IPv4 packet (first byte {vihl:#04x})")
    if proto != 6:
        raise WireError(f"response is not TCP: IP protocol {proto}")
    if frag & 0x3FFF:
        # A fragment's tot_len is not the segment's length. Non-first fragments hold no TCP header.
        raise WireError("response is an IPv4 fragment")
    if have < ihl + 20:
        raise WireError(f"response too short for its headers: {have} bytes")
    doff = (pkt[off + ihl + 12] >> 2) & 0x3C
    if doff < 20 or have < ihl + doff:
        raise WireError(f"response has bad TCP data offset {doff} for {have} bytes")
    if tot_len < ihl + doff:
        raise WireError(f"response tot_len {tot_len} shorter than headers ({ihl}+{doff})")
    tcp_len = doff if doff <= MAX_TCP_HEADER_IN_RECORD else MAX_TCP_HEADER_IN_RECORD
    if ihl == 20:
        # The usual case: one slice, as captured (IP checksum included; tcpcopy never checks it).
        head = bytes(pkt[off : off + 20 + tcp_len])
        return head + _ZEROS[20 + tcp_len :]
    # IPv4 options (rare). Intercept copies 20 bytes but keeps ihl, and tcpcopy then looks for
    # the TCP header inside the options (reference §1.4 quirk). We drop the options, set ihl to 5
    # and subtract them from tot_len, so payload = tot_len - 20 - doff stays true. The IP checksum
    # is left as captured: it is now stale, but receivers never check record checksums.
    rec = bytearray(RECORD_SIZE)
    rec[0:20] = pkt[off : off + 20]
    rec[0] = 0x45
    rec[2:4] = (tot_len - (ihl - 20)).to_bytes(2, "big")
    rec[20 : 20 + tcp_len] = pkt[off + ihl : off + ihl + tcp_len]
    return bytes(rec)


def encode_frame(records: Sequence[bytes]) -> bytes:
    """One frame: a 2-byte big-endian count (1..16), then the records.

    Raises ``ValueError`` for 0 or more than ``COMB_MAX`` records, or for a record that is not
    ``RECORD_SIZE`` bytes.
    """
    count = len(records)
    if not 1 <= count <= COMB_MAX:
        raise ValueError(f"encode_frame: {count} records; a frame holds 1..{COMB_MAX}")
    for rec in records:
        if len(rec) != RECORD_SIZE:
            raise ValueError(f"encode_frame: record of {len(rec)} bytes, not {RECORD_SIZE}")
    return _COUNT.pack(count) + b"".join(records)


def encode_frames(records: Sequence[bytes]) -> bytes:
    """Any number of records, as consecutive frames of up to ``COMB_MAX`` records each (no
    records gives ``b""``)."""
    return b"".join(
        encode_frame(records[i : i + COMB_MAX]) for i in range(0, len(records), COMB_MAX)
    )


class FrameDecoder:
    """Decodes the assist→online stream of one connection (the online side).

    Call ``feed`` with whatever ``recv`` returned. It returns the complete 64-byte records in
    order.
    """

    __slots__ = ("_buf", "_failed")

    def __init__(self) -> None:
        self._buf = bytearray()
        self._failed = False

    def feed(self, data: _Buffer) -> list[bytes]:
        """Add received bytes and return the records of every frame they complete.

        Raises ``WireError`` if a frame count is 0 or above ``COMB_MAX``. That means the peer
        uses another build profile or the stream is out of step, and tcpcopy drops the
        connection. The decoder is then unusable, and a further ``feed`` raises ``ValueError``.
        """
        if self._failed:
            raise ValueError("FrameDecoder.feed after a WireError; close the connection")
        buf = self._buf
        buf += data
        n = len(buf)
        pos = 0
        out: list[bytes] = []
        while n - pos >= 2:
            count = buf[pos] << 8 | buf[pos + 1]
            # Check the count as soon as it arrives: a bad one would otherwise sit waiting for
            # up to 4 MiB of "records".
            if not 1 <= count <= COMB_MAX:
                self._failed = True
                raise WireError(f"bad frame count {count} (expected 1..{COMB_MAX})")
            end = pos + 2 + count * RECORD_SIZE
            if end > n:
                break
            body = bytes(buf[pos + 2 : end])
            out.extend(body[i : i + RECORD_SIZE] for i in range(0, len(body), RECORD_SIZE))
            pos = end
        if pos:
            del buf[:pos]
        return out
