"""Reading pcap and pcapng capture files as a stream of IPv4 packets, and writing pcap and
pcapng files.

Invariants:

* A capture is streamed: the reader holds one chunk (``CHUNK`` bytes) plus at most one record
  or block, never the whole file. Each yielded ``Frame.ip`` is a fresh ``bytes`` copy of the
  IPv4 packet, not a view of the chunk: a consumer that keeps a few frames (a session queue) must
  not pin a megabyte chunk per frame.
* Bad bytes never raise out of iteration. Each bad record is counted in ``CaptureFile.errors``.
  A record that cannot be framed (a pcap record header with an absurd length, a pcapng block whose
  two length fields disagree, the end of the file inside a record) ends the iteration, because a
  pcap file has no marker to resynchronise on. A record that is framed but whose contents are bad
  (a frame too short for its link header, a pcapng packet on an undefined interface) is skipped
  and iteration goes on.
* Only the first bytes of a file decide ``WireError`` (not a capture, unsupported pcap link type,
  unsupported version). After ``open_capture`` returns, nothing raises but I/O errors.
* Only IPv4 frames are yielded. The rest are counted in ``CaptureFile.skipped``.
* ``Frame.ip`` is cut to the IPv4 ``tot_len`` when the frame holds more (Ethernet padding, a
  trailing FCS), so ``len(frame.ip)`` is the packet as the sender built it, unless the snaplen cut
  it (``frame.truncated``). A ``tot_len`` of 0 (TSO on the capturing host) leaves the frame as is.
* ``Frame.caplen`` and ``Frame.origlen`` are the record's own lengths: they include the link
  header.

Hot-path notes: about 10^6 records/s in pure Python. Records are parsed with bound
``struct.Struct`` methods on a chunk read in one call, and frames are made with ``tuple.__new__``
(about 100 ns cheaper than calling the NamedTuple).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from struct import Struct
from types import TracebackType
from typing import IO, Final, NamedTuple, Self

from nfreplay.errors import WireError
from nfreplay.proto.link import (
    FIXED_TYPE_FIELD,
    NOT_IPV4,
    LINKTYPE_ETHERNET,
    LINKTYPE_IPV4,
    LINKTYPE_LINUX_SLL,
    LINKTYPE_LINUX_SLL2,
    LINKTYPE_NULL,
    LINKTYPE_RAW,
    LINKTYPE_RAW_LINUX,
    LINKTYPE_RAW_OPENBSD,
    SUPPORTED_LINKTYPES,
    Strip,
    stripper,
)

__all__ = [
    "LINKTYPE_NULL", "LINKTYPE_ETHERNET", "LINKTYPE_RAW_OPENBSD", "LINKTYPE_RAW_LINUX",
    "LINKTYPE_RAW", "LINKTYPE_LINUX_SLL", "LINKTYPE_IPV4", "LINKTYPE_LINUX_SLL2",
    "SUPPORTED_LINKTYPES", "MAX_CAPLEN", "CHUNK", "ERROR_KINDS",
    "Frame", "CaptureFile", "open_capture", "PcapWriter", "PcapngWriter",
]  # fmt: skip

# libpcap's MAXIMUM_SNAPLEN. A larger record length means a corrupt (or not a) capture.
MAX_CAPLEN = 262144
# Bytes read per refill. Big enough that refills cost nothing per record, small enough to be
# irrelevant next to the frames a consumer holds.
CHUNK = 1 << 20
# pcapng blocks other than packets (name resolution, statistics, secrets) are read whole before
# they are skipped; a larger length field is taken as corruption.
_MAX_BLOCK = 16 << 20

#: Every key of ``CaptureFile.errors``; they are all present, starting at 0.
ERROR_KINDS: Final = (
    "truncated_record",  # the file ends inside a record or block: iteration stopped
    "bad_length",  # a record or block length that cannot be right: iteration stopped (pcap)
    "snaplen_cut",  # caplen < origlen: the frame was yielded, flagged ``truncated``
    "bad_frame",  # a frame too short for its link or IPv4 header, or not version 4: skipped
    "bad_block",  # pcapng: a malformed block body or an undefined interface: skipped
)
_SKIP_KINDS: Final = ("non_ipv4", "unsupported_linktype", "obsolete_packet_block")

_PCAP_MAGIC: Final[dict[bytes, tuple[str, bool]]] = {
    # first four bytes -> (struct byte order, nanosecond timestamps)
    b"\xd4\xc3\xb2\xa1": ("<", False),
    b"\xa1\xb2\xc3\xd4": (">", False),
    b"\x4d\x3c\xb2\xa1": ("<", True),
    b"\xa1\xb2\x3c\x4d": (">", True),
}
_PCAPNG_SHB = b"\x0a\x0d\x0d\x0a"  # a palindrome: the same in both byte orders
_SHB = 0x0A0D0D0A
_IDB = 1
_OPB = 2  # obsolete Packet Block (pcapng drafts before 2012)
_SPB = 3
_EPB = 6
_BOM = 0x1A2B3C4D
_OPT_IF_NAME = 2
_OPT_IF_TSRESOL = 9
_OPT_IF_TSOFFSET = 14


class Frame(NamedTuple):
    """One IPv4 packet read from a capture.

    ``ts`` is the capture time in seconds since the epoch. ``ip`` is the IPv4 packet, link header
    removed and cut to its ``tot_len``. ``caplen`` and ``origlen`` are the record's captured and
    original lengths, link header included.
    """

    ts: float
    ip: bytes
    caplen: int
    origlen: int

    @property
    def truncated(self) -> bool:
        """True if the capture's snaplen cut the frame (``caplen < origlen``)."""
        return self.caplen < self.origlen


_new_frame = tuple.__new__


def _supported() -> str:
    return ", ".join(f"{n} {name}" for n, name in SUPPORTED_LINKTYPES.items())


def _describe_start(head: bytes) -> str:
    """What the first bytes of a file look like, for the 'not a capture' message."""
    if not head:
        return "the file is empty"
    if head[:2] == b"\x1f\x8b":
        return "it is gzip-compressed (gunzip it first)"
    text = "".join(chr(b) if 32 <= b < 127 else "." for b in head[:8])
    return f"it starts with {head[:8].hex(' ')} ({text!r})"


# --- reading -------------------------------------------------------------------------------


class CaptureFile:
    """A pcap or pcapng capture, read once as a stream of IPv4 ``Frame`` objects.

    Make one with ``open_capture(path)``, or with ``CaptureFile(stream, name)`` for an open
    binary stream positioned at the start of the capture. Iterate it once. Use it as a context
    manager (or call ``close``) to close the stream.

    After (or during) iteration: ``errors`` counts bad records by kind (all of ``ERROR_KINDS``
    are present), ``skipped`` counts frames that were not yielded because they are not IPv4
    (``non_ipv4``), sit on a pcapng interface with an unsupported link type
    (``unsupported_linktype``), or come in an obsolete pcapng Packet Block
    (``obsolete_packet_block``). ``records`` counts every record read and ``frames`` those
    yielded.

    Raises ``WireError`` (at construction) if the stream is not a pcap or pcapng capture, if its
    version is unsupported, or if a pcap file has an unsupported link type.
    """

    format: str
    """``"pcap"`` or ``"pcapng"``."""
    linktype: int | None
    """The pcap link type; for pcapng, the link type of the first interface once it is read."""
    snaplen: int
    """The pcap file's snaplen (0: not set); for pcapng, that of the first interface."""
    nanoseconds: bool
    """pcap: True for the nanosecond format. pcapng: False (each interface has its own unit)."""

    def __init__(self, stream: IO[bytes], name: str) -> None:
        self.name = name
        self._stream = stream
        self.errors: dict[str, int] = dict.fromkeys(ERROR_KINDS, 0)
        self.skipped: dict[str, int] = dict.fromkeys(_SKIP_KINDS, 0)
        self.records = 0
        self.frames = 0
        self._started = False
        self.linktype = None
        self.snaplen = 0
        self.nanoseconds = False
        head = stream.read(24)
        magic = head[:4]
        if magic in _PCAP_MAGIC:
            self._open_pcap(head, *_PCAP_MAGIC[magic])
        elif magic == _PCAPNG_SHB:
            self._open_pcapng(head)
        else:
            raise WireError(f"{name}: not a pcap or pcapng capture: {_describe_start(head)}")

    def _open_pcap(self, head: bytes, order: str, ns: bool) -> None:
        self.format = "pcap"
        self.nanoseconds = ns
        if len(head) < 24:
            raise WireError(f"{self.name}: truncated pcap file header ({len(head)} of 24 bytes)")
        major, minor, _zone, _sigfigs, snaplen, network = Struct(order + "HHiIII").unpack_from(
            head, 4
        )
        if major != 2:
            raise WireError(f"{self.name}: unsupported pcap version {major}.{minor}")
        # The upper 16 bits carry FCS information (pcap spec, LinkType field); the frames are
        # cut to the IPv4 tot_len, so a trailing FCS needs no handling.
        linktype = network & 0xFFFF
        strip = stripper(linktype)
        if strip is None:
            raise WireError(
                f"{self.name}: link type {linktype} is not supported (supported: {_supported()})"
            )
        self.linktype = linktype
        self.snaplen = snaplen
        self._strip = strip
        self._leftover = head[24:]
        self._rec_order = order

    def _open_pcapng(self, head: bytes) -> None:
        self.format = "pcapng"
        if len(head) < 12:
            raise WireError(f"{self.name}: truncated pcapng section header")
        bom = head[8:12]
        if bom == b"\x4d\x3c\x2b\x1a":
            order = "<"
        elif bom == b"\x1a\x2b\x3c\x4d":
            order = ">"
        else:
            raise WireError(
                f"{self.name}: pcapng section header with a bad byte-order magic {bom.hex()}"
            )
        if len(head) >= 14:
            major = Struct(order + "H").unpack_from(head, 12)[0]
            if major != 1:
                raise WireError(f"{self.name}: unsupported pcapng version {major}")
        self._leftover = head  # the section header block is parsed again by the iterator
        self._rec_order = order

    def __iter__(self) -> Iterator[Frame]:
        if self._started:
            raise ValueError(f"{self.name}: a CaptureFile can be iterated only once")
        self._started = True
        if self.format == "pcap":
            return self._pcap_frames()
        return self._pcapng_frames()

    def _pcap_frames(self) -> Iterator[Frame]:
        read = self._stream.read
        unpack_rec = Struct(self._rec_order + "IIII").unpack_from
        strip = self._strip
        # Fast path for the usual frame (untagged Ethernet, cooked IPv4): the type field says
        # IPv4 and the header length is fixed. It saves the call to strip (~13 % measured).
        tpos, hlen = FIXED_TYPE_FIELD.get(self.linktype or 0, (0, MAX_CAPLEN + 1))
        divisor = 1e9 if self.nanoseconds else 1e6
        # libpcap reads a record with caplen > snaplen (cut to the snaplen); nfreplay stops
        # instead: pcap has no resync marker, and a record longer than the file says records
        # can be is far more often lost framing than a lax writer. A snaplen of 0 (some
        # writers) only gets the absolute limit.
        limit = min(self.snaplen, MAX_CAPLEN) if self.snaplen else MAX_CAPLEN
        errors = self.errors
        skipped = self.skipped
        buf = self._leftover
        del self._leftover
        pos = 0
        while True:
            have = len(buf)
            if have - pos < 16:
                more = read(CHUNK)
                if not more:
                    if have - pos:
                        errors["truncated_record"] += 1
                    return
                buf = buf[pos:] + more
                pos = 0
                continue
            sec, frac, caplen, origlen = unpack_rec(buf, pos)
            if caplen > limit:
                errors["bad_length"] += 1
                return
            start = pos + 16
            end = start + caplen
            if end > have:
                more = read(max(CHUNK, end - have))
                if not more:
                    errors["truncated_record"] += 1
                    return
                buf = buf[pos:] + more
                pos = 0
                continue
            pos = end
            self.records += 1
            if caplen >= hlen and buf[start + tpos] == 8 and buf[start + tpos + 1] == 0:
                ip = start + hlen
            else:
                ip = strip(buf, start, end)
            if ip < 0:
                if ip == NOT_IPV4:
                    skipped["non_ipv4"] += 1
                else:
                    errors["bad_frame"] += 1
                continue
            if end - ip < 20 or buf[ip] >> 4 != 4:
                errors["bad_frame"] += 1
                continue
            tot_len = buf[ip + 2] << 8 | buf[ip + 3]
            if 20 <= tot_len < end - ip:
                end = ip + tot_len
            if caplen < origlen:
                errors["snaplen_cut"] += 1
            self.frames += 1
            yield _new_frame(Frame, (sec + frac / divisor, buf[ip:end], caplen, origlen))

    def _pcapng_frames(self) -> Iterator[Frame]:
        read = self._stream.read
        errors = self.errors
        skipped = self.skipped
        buf = self._leftover
        del self._leftover
        pos = 0
        order = self._rec_order
        u32 = Struct(order + "I").unpack_from
        block_hdr = Struct(order + "II").unpack_from
        epb = Struct(order + "IIIII").unpack_from
        # Per interface of the current section: (strip or None, divisor, offset, snaplen).
        ifaces: list[tuple[Strip | None, float, float, int]] = []
        last_ts = 0.0
        while True:
            have = len(buf)
            if have - pos < 12:
                more = read(CHUNK)
                if not more:
                    if have - pos:
                        errors["truncated_record"] += 1
                    return
                buf = buf[pos:] + more
                pos = 0
                continue
            btype, blen = block_hdr(buf, pos)
            if btype == _SHB:
                # A new section may switch byte order; its block length is in the new order.
                bom = buf[pos + 8 : pos + 12]
                if bom == b"\x4d\x3c\x2b\x1a":
                    order = "<"
                elif bom == b"\x1a\x2b\x3c\x4d":
                    order = ">"
                else:
                    errors["bad_block"] += 1
                    return
                u32 = Struct(order + "I").unpack_from
                block_hdr = Struct(order + "II").unpack_from
                epb = Struct(order + "IIIII").unpack_from
                blen = u32(buf, pos + 4)[0]
            if blen < 12 or blen & 3 or blen > _MAX_BLOCK:
                errors["bad_length"] += 1
                return
            end = pos + blen
            if end > have:
                more = read(max(CHUNK, end - have))
                if not more:
                    errors["truncated_record"] += 1
                    return
                buf = buf[pos:] + more
                pos = 0
                continue
            if u32(buf, end - 4)[0] != blen:
                errors["bad_length"] += 1
                return
            start = pos
            pos = end
            if btype == _EPB:
                self.records += 1
                if blen < 32:
                    errors["bad_block"] += 1
                    continue
                iface, ts_hi, ts_lo, caplen, origlen = epb(buf, start + 8)
                data = start + 28
                if caplen > blen - 32 or caplen > MAX_CAPLEN or iface >= len(ifaces):
                    errors["bad_block"] += 1
                    continue
                strip, divisor, offset, _snap = ifaces[iface]
                last_ts = (ts_hi << 32 | ts_lo) / divisor + offset
            elif btype == _SPB:
                self.records += 1
                if blen < 16 or not ifaces:
                    errors["bad_block"] += 1
                    continue
                origlen = u32(buf, start + 8)[0]
                strip, _divisor, _offset, snap = ifaces[0]
                # The SPB has no caplen: the packet is cut by the interface snaplen (0 = none)
                # and by the block itself, whichever is shorter.
                caplen = min(origlen, blen - 16)
                if snap:
                    caplen = min(caplen, snap)
                data = start + 12
                # No timestamp in an SPB: it keeps the time of the previous packet.
            elif btype == _IDB:
                info = self._interface(buf, start, blen, order)
                if info is None:
                    errors["bad_block"] += 1
                    # Keep the numbering of the interfaces that follow.
                    ifaces.append((None, 1e6, 0.0, 0))
                    continue
                linktype, snap, divisor, offset = info
                if not ifaces and self.linktype is None:
                    self.linktype = linktype
                    self.snaplen = snap
                ifaces.append((stripper(linktype), divisor, offset, snap))
                continue
            elif btype == _SHB:
                ifaces = []  # interface ids are per section
                continue
            elif btype == _OPB:
                self.records += 1
                skipped["obsolete_packet_block"] += 1
                continue
            else:
                # NRB, ISB, DSB, custom and unknown blocks: framed by their length, not needed.
                continue
            if strip is None:
                skipped["unsupported_linktype"] += 1
                continue
            frame_end = data + caplen
            ip = strip(buf, data, frame_end)
            if ip < 0:
                if ip == NOT_IPV4:
                    skipped["non_ipv4"] += 1
                else:
                    errors["bad_frame"] += 1
                continue
            if frame_end - ip < 20 or buf[ip] >> 4 != 4:
                errors["bad_frame"] += 1
                continue
            tot_len = buf[ip + 2] << 8 | buf[ip + 3]
            if 20 <= tot_len < frame_end - ip:
                frame_end = ip + tot_len
            if caplen < origlen:
                errors["snaplen_cut"] += 1
            self.frames += 1
            yield _new_frame(Frame, (last_ts, buf[ip:frame_end], caplen, origlen))

    @staticmethod
    def _interface(
        buf: bytes, start: int, blen: int, order: str
    ) -> tuple[int, int, float, float] | None:
        """(link type, snaplen, timestamp divisor, timestamp offset) of an IDB; None if it is
        malformed."""
        if blen < 20:
            return None
        linktype, snaplen = Struct(order + "HxxI").unpack_from(buf, start + 8)
        divisor = 1e6  # if_tsresol absent: microseconds
        offset = 0.0
        opt = Struct(order + "HH").unpack_from
        p = start + 16
        end = start + blen - 4
        while p + 4 <= end:
            code, length = opt(buf, p)
            value = p + 4
            if code == 0:
                break
            if value + length > end:
                return None
            if code == _OPT_IF_TSRESOL and length >= 1:
                v = buf[value]
                # MSB clear: 10^-v seconds; MSB set: 2^-(v & 0x7F) seconds.
                divisor = float(2 ** (v & 0x7F)) if v & 0x80 else float(10**v)
            elif code == _OPT_IF_TSOFFSET and length >= 8:
                offset = float(Struct(order + "q").unpack_from(buf, value)[0])
            p = value + ((length + 3) & ~3)
        return linktype, snaplen, divisor, offset

    def summary(self) -> str:
        """One line: the format, what was read, what was skipped and the errors, if any."""
        if self.format == "pcap":
            kind = f"pcap ({'ns' if self.nanoseconds else 'us'}, link type {self.linktype})"
        else:
            kind = "pcapng"
        line = f"{self.name}: {kind}, {self.records} records, {self.frames} IPv4 frames"
        skipped = ", ".join(f"{k} {v}" for k, v in self.skipped.items() if v)
        if skipped:
            line += f"; skipped: {skipped}"
        errors = ", ".join(f"{k} {v}" for k, v in self.errors.items() if v)
        line += f"; errors: {errors}" if errors else "; no errors"
        return line

    def close(self) -> None:
        """Close the underlying stream."""
        self._stream.close()

    def __enter__(self) -> CaptureFile:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def open_capture(path: str | os.PathLike[str]) -> CaptureFile:
    """Open a pcap or pcapng file for reading (see ``CaptureFile``).

    Raises ``OSError`` if the file cannot be opened and ``WireError`` if it is not a
    capture nfreplay can read.
    """
    name = os.fspath(path)
    stream = open(name, "rb")  # noqa: SIM115 - owned by the CaptureFile
    try:
        return CaptureFile(stream, name)
    except BaseException:
        stream.close()
        raise


# --- writing -------------------------------------------------------------------------------


class PcapWriter:
    """Write a pcap file (version 2.4), one record per ``write``.

    ``target`` is a path (the file is created or truncated, and closed by ``close``) or an open
    binary stream (left open). ``linktype`` is written as given; the reader's restrictions do not
    apply. ``nanoseconds`` selects the nanosecond format.
    """

    def __init__(
        self,
        target: str | os.PathLike[str] | IO[bytes],
        linktype: int = LINKTYPE_ETHERNET,
        nanoseconds: bool = False,
        snaplen: int = MAX_CAPLEN,
    ) -> None:
        if not 0 <= linktype <= 0xFFFF:
            raise ValueError(f"PcapWriter: link type {linktype} out of range")
        if not 0 < snaplen <= 0xFFFFFFFF:
            raise ValueError(f"PcapWriter: bad snaplen {snaplen}")
        if isinstance(target, (str, os.PathLike)):
            self._stream: IO[bytes] = open(target, "wb")  # noqa: SIM115 - closed by close()
            self._owned = True
        else:
            self._stream = target
            self._owned = False
        self._unit = 1_000_000_000 if nanoseconds else 1_000_000
        self.snaplen = snaplen
        self._rec = Struct("<IIII")
        magic = 0xA1B23C4D if nanoseconds else 0xA1B2C3D4
        self._stream.write(Struct("<IHHiIII").pack(magic, 2, 4, 0, 0, snaplen, linktype))

    def write(
        self, ts: float, frame: bytes | bytearray | memoryview, origlen: int | None = None
    ) -> None:
        """Append one record: ``frame`` captured at ``ts`` (seconds since the epoch).

        ``origlen`` is the frame's length on the wire (default ``len(frame)``); give more than
        ``len(frame)`` to record a snaplen cut. Raises ``ValueError`` if ``ts`` is negative, if
        ``frame`` exceeds the snaplen, or if ``origlen`` is below ``len(frame)``.
        """
        caplen = len(frame)
        if origlen is None:
            origlen = caplen
        if ts < 0 or not ts < 2**32:
            raise ValueError(f"PcapWriter.write: timestamp {ts} out of range")
        if caplen > self.snaplen:
            raise ValueError(f"PcapWriter.write: {caplen} bytes exceed snaplen {self.snaplen}")
        if origlen < caplen:
            raise ValueError(f"PcapWriter.write: origlen {origlen} below caplen {caplen}")
        sec = int(ts)
        # ts - sec is exact in binary floating point, so the fraction is rounded only once.
        frac = round((ts - sec) * self._unit)
        if frac >= self._unit:
            sec, frac = sec + 1, frac - self._unit
        self._stream.write(self._rec.pack(sec, frac, caplen, origlen))
        self._stream.write(frame)

    def close(self) -> None:
        """Flush, and close the file if this writer opened it."""
        if self._owned:
            self._stream.close()
        else:
            self._stream.flush()

    def __enter__(self) -> PcapWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class PcapngWriter:
    """Write a pcapng file: one Section Header Block, one Interface Description Block
    (``if_name``, ``if_tsresol`` = 9: nanosecond timestamps) and an Enhanced Packet Block per
    ``write``.

    ``stream`` is an open binary stream; the writer does no other I/O (it never opens, seeks or
    closes a file, so a caller can rotate files or write to memory). Each block is written with
    one ``write`` call, whole, so a reader of a file cut anywhere sees complete blocks and at
    most one partial block at the end. All blocks are little-endian, padded to 32 bits, with
    both length fields, as Wireshark expects. The section length is -1 (unknown): the file can
    grow without seeking back.
    """

    def __init__(
        self,
        stream: IO[bytes],
        linktype: int = LINKTYPE_RAW,
        if_name: str = "nfreplay",
        snaplen: int = MAX_CAPLEN,
    ) -> None:
        if not 0 <= linktype <= 0xFFFF:
            raise ValueError(f"PcapngWriter: link type {linktype} out of range")
        if not 0 <= snaplen <= 0xFFFFFFFF:
            raise ValueError(f"PcapngWriter: bad snaplen {snaplen}")
        name = if_name.encode()
        if len(name) > 0xFFFF:
            raise ValueError("PcapngWriter: interface name too long")
        self._stream = stream
        self.snaplen = snaplen
        self._epb = Struct("<IIIIIII")
        shb = Struct("<IHHq").pack(_BOM, 1, 0, -1)
        # if_tsresol 9: 10^-9 s units; an empty option 0 (opt_endofopt) ends the list.
        options = b"".join(
            (_option(_OPT_IF_NAME, name), _option(_OPT_IF_TSRESOL, b"\x09"), _option(0, b""))
        )
        idb = Struct("<HHI").pack(linktype, 0, snaplen) + options
        stream.write(_block(_SHB, shb) + _block(_IDB, idb))

    def write(
        self, ts: float, frame: bytes | bytearray | memoryview, origlen: int | None = None
    ) -> None:
        """Append one packet captured at ``ts`` (seconds since the epoch, rounded to the
        nanosecond). See ``write_ns``."""
        if not 0 <= ts < 2**64 / 1e9:
            raise ValueError(f"PcapngWriter.write: timestamp {ts} out of range")
        sec = int(ts)
        # ts - sec is exact in binary floating point, so the fraction is rounded only once.
        self.write_ns(sec * 1_000_000_000 + round((ts - sec) * 1e9), frame, origlen)

    def write_ns(
        self, ts_ns: int, frame: bytes | bytearray | memoryview, origlen: int | None = None
    ) -> None:
        """Append one packet captured at ``ts_ns`` nanoseconds since the epoch (what
        ``time.time_ns()`` returns).

        ``origlen`` is the frame's length on the wire (default ``len(frame)``); give more than
        ``len(frame)`` to record a snaplen cut. Raises ``ValueError`` if ``ts_ns`` is out of
        range, if ``frame`` exceeds the snaplen (0: no limit) or if ``origlen`` is below
        ``len(frame)``.
        """
        caplen = len(frame)
        if origlen is None:
            origlen = caplen
        if not 0 <= ts_ns < 2**64:
            raise ValueError(f"PcapngWriter.write: timestamp {ts_ns} ns out of range")
        if self.snaplen and caplen > self.snaplen:
            raise ValueError(
                f"PcapngWriter.write: {caplen} bytes exceed snaplen {self.snaplen}"
            )
        if not caplen <= origlen <= 0xFFFFFFFF:
            raise ValueError(f"PcapngWriter.write: bad origlen {origlen} for caplen {caplen}")
        pad = -caplen & 3
        blen = 32 + caplen + pad
        head = self._epb.pack(_EPB, blen, 0, ts_ns >> 32, ts_ns & 0xFFFFFFFF, caplen, origlen)
        self._stream.write(b"".join((head, frame, bytes(pad), blen.to_bytes(4, "little"))))

    def close(self) -> None:
        """Flush the stream (it stays open: its owner closes it)."""
        self._stream.flush()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _option(code: int, value: bytes) -> bytes:
    """One pcapng option: code, length, value padded to 32 bits."""
    return Struct("<HH").pack(code, len(value)) + value + bytes(-len(value) & 3)


def _block(btype: int, body: bytes) -> bytes:
    """One little-endian pcapng block: type, length, body padded to 32 bits, length again."""
    body += bytes(-len(body) & 3)
    blen = 12 + len(body)
    return Struct("<II").pack(btype, blen) + body + Struct("<I").pack(blen)
