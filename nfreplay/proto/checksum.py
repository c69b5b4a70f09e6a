"""The Internet checksum (RFC 1071) for IPv4 and TCP: full computation and incremental update.

How the arithmetic works (all functions rely on it):

* ``2**16 ≡ 1 (mod 0xFFFF)``, so the one's-complement sum of the 16-bit words of a byte string is
  congruent mod 0xFFFF to the whole string read as one big-endian integer. One
  ``int.from_bytes(data, "big") % 0xFFFF`` replaces a Python loop over words (it is about 3x
  faster than ``struct.unpack`` + ``sum`` at 1500 bytes).
* For the same reason a 32-bit field that starts on a 16-bit boundary counts as its plain value, so
  the change a rewrite causes is ``delta = sum(new - old)`` over the changed fields.
* In one's complement ``~x ≡ -x (mod 0xFFFF)``. RFC 1624's update ``HC' = ~(~HC + ~m + m')`` thus
  becomes ``HC' = (HC - delta) % 0xFFFF``, and a full computation becomes ``(-sum) % 0xFFFF``.

Which of the two zeros comes out: a one's-complement sum has two zeros, 0x0000 and 0xFFFF. The sum
of an IPv4 header is never zero (the version nibble is 4), and neither is a TCP sum (the
pseudo-header carries protocol 6). For a nonzero sum, RFC 1071 with end-around carry gives a sum in
[1, 0xFFFF] and so a checksum in [0, 0xFFFE]. ``% 0xFFFF`` gives exactly that range. Our results are
therefore bit-identical to a full RFC 1071 recompute (and to scapy). In the RFC 1624 §3 example
they are 0x0000, not the 0xFFFF that the older RFC 1141 formula gives. Receivers check a packet by
summing every word, checksum included, and compare the result with -0; 0x0000 and 0xFFFF pass that
check alike. So a stored 0xFFFF from another stack is handled too: it is congruent to 0, and our
update simply leaves the canonical value.

An incremental update is only right if the old checksum was. That fails for locally generated
packets captured before checksum offload (CHECKSUM_PARTIAL). Use a full recompute
(``fill_checksums``) for those.
"""

from struct import Struct

__all__ = ["checksum", "tcp_checksum", "fill_checksums", "verify", "adjust", "odd_delta"]

_Buffer = bytes | bytearray | memoryview

# version/ihl, tot_len, proto, src, dst — what a full recompute needs from the IPv4 header.
_IP_FIELDS = Struct("!BxH5xB2xII")
_U16 = Struct("!H")
_pack_u16 = _U16.pack_into


def checksum(data: _Buffer, initial: int = 0) -> int:
    """Return the Internet checksum of ``data``, ready to store in a checksum field.

    ``data`` must hold zeros where its own checksum field is. An odd length is padded with a
    zero byte, as RFC 1071 says. ``initial`` is a partial sum (for example a pseudo-header's
    fields added as ints) that is folded in. Only its value mod 0xFFFF matters.
    """
    total = int.from_bytes(data, "big")
    if len(data) & 1:
        total <<= 8  # the pad byte makes the last byte the high half of a word
    total += initial
    if total == 0:
        # All-zero input: the one's-complement sum is +0 and RFC 1071 stores 0xFFFF. (-0 % 0xFFFF
        # would give 0x0000, which a receiver summing with end-around carry would reject.)
        return 0xFFFF
    return -total % 0xFFFF


def _tcp_sum_fix(buf: _Buffer, tcp_off: int, tcp_len: int, src: int, dst: int) -> int:
    """The checksum to store for the TCP segment ``buf[tcp_off:tcp_off+tcp_len]``, whatever its
    checksum field holds now."""
    total = int.from_bytes(memoryview(buf)[tcp_off : tcp_off + tcp_len], "big")
    if tcp_len & 1:
        total <<= 8
    old = buf[tcp_off + 16] << 8 | buf[tcp_off + 17]
    # total counts the old checksum once (its field ends on a 16-bit boundary, so it counts as its
    # plain value); removing it leaves the sum over a zeroed field. The pseudo-header
    # (src, dst, zero, protocol 6, TCP length) adds as plain ints because 2**16 ≡ 1.
    return (old - total - src - dst - 6 - tcp_len) % 0xFFFF


def tcp_checksum(src: int, dst: int, tcp: _Buffer) -> int:
    """Return the TCP checksum to store for segment ``tcp`` (header + payload) sent from ``src``
    to ``dst`` (IPv4 addresses as ints).

    The current content of the checksum field (bytes 16-17) is ignored. You do not need to zero it
    first. Raises ``ValueError`` if ``tcp`` is shorter than a TCP header.
    """
    n = len(tcp)
    if n < 20:
        raise ValueError(f"tcp_checksum: segment of {n} bytes is shorter than a TCP header")
    return _tcp_sum_fix(tcp, 0, n, src, dst)


def fill_checksums(pkt: bytearray, off: int = 0) -> None:
    """Recompute the IPv4 header checksum and the TCP checksum of the packet at ``pkt[off:]``.

    The TCP segment length comes from the IPv4 ``tot_len`` field. Bytes after ``tot_len`` (such as
    link-layer padding) are not covered. Raises ``ValueError`` if the buffer is not an IPv4/TCP
    packet or is shorter than ``tot_len`` (call ``tcpip.complete`` first for captured packets).
    """
    if len(pkt) - off < 40:
        raise ValueError("fill_checksums: buffer shorter than IPv4 + TCP headers")
    vihl, tot_len, proto, src, dst = _IP_FIELDS.unpack_from(pkt, off)
    ihl = (vihl & 0x0F) << 2
    if vihl >> 4 != 4 or ihl < 20 or proto != 6:
        raise ValueError("fill_checksums: not an IPv4/TCP packet")
    if tot_len < ihl + 20 or len(pkt) - off < tot_len:
        raise ValueError(f"fill_checksums: tot_len {tot_len} does not fit the buffer and headers")
    # Same trick as in _tcp_sum_fix: subtract the old checksum instead of zeroing its field.
    old = pkt[off + 10] << 8 | pkt[off + 11]
    ip_sum = int.from_bytes(memoryview(pkt)[off : off + ihl], "big")
    _pack_u16(pkt, off + 10, (old - ip_sum) % 0xFFFF)
    _pack_u16(pkt, off + ihl + 16, _tcp_sum_fix(pkt, off + ihl, tot_len - ihl, src, dst))


def verify(pkt: _Buffer, off: int = 0) -> bool:
    """True if the packet at ``pkt[off:]`` is IPv4/TCP and both its checksums are right.

    A truncated buffer or a non-TCP packet gives ``False``. This function never raises on bad
    bytes.
    """
    if len(pkt) - off < 40:
        return False
    vihl: int
    tot_len: int
    src: int
    dst: int
    vihl, tot_len, proto, src, dst = _IP_FIELDS.unpack_from(pkt, off)
    ihl = (vihl & 0x0F) << 2
    if vihl >> 4 != 4 or ihl < 20 or proto != 6 or tot_len < ihl + 20 or len(pkt) - off < tot_len:
        return False
    view = memoryview(pkt)
    # A correct packet sums (checksum included) to -0. For a nonzero total that is exactly
    # "≡ 0 mod 0xFFFF", and both sums here are nonzero (version 4, protocol 6).
    if int.from_bytes(view[off : off + ihl], "big") % 0xFFFF:
        return False
    tcp_len = tot_len - ihl
    total = int.from_bytes(view[off + ihl : off + tot_len], "big")
    if tcp_len & 1:
        total <<= 8
    return (total + src + dst + 6 + tcp_len) % 0xFFFF == 0


def adjust(csum: int, delta: int) -> int:
    """Return checksum ``csum`` updated for a change of the covered data (RFC 1624).

    ``delta`` is ``sum(new - old)`` over the changed fields, each read as a big-endian int. This
    holds for 16-bit and 32-bit fields that end on a 16-bit boundary of the checksummed data (their
    last byte sits at an odd offset from its start), as every fixed IPv4/TCP field does. For a
    field whose last byte sits at an even offset (an unaligned TCP option), pass
    ``odd_delta(new - old)`` instead. The result is the canonical RFC 1071 value; see the module
    docstring.

    ``tcpip.rewrite`` inlines this formula, because a function call costs as much as the
    arithmetic.
    """
    return (csum - delta) % 0xFFFF


def odd_delta(delta: int) -> int:
    """Scale a ``new - old`` difference for a field whose last byte sits at an even offset from
    the start of the checksummed data: its bytes sit in the swapped halves of the checksum words."""
    # Such a field's contribution to the word sum is its value times 2**8 (mod 0xFFFF).
    return delta << 8
