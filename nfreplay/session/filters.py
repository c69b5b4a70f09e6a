"""Which sessions to replay: client address allow/deny lists, the LVS TOA option (the real
client behind a FULLNAT load balancer), and a pattern on a session's first request.

All three run once per new session, not per packet, and keep their state precomputed: the
address lists as (mask, set of networks) groups, the pattern as a compiled bytes regex.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence

from nfreplay.errors import ConfigError
from nfreplay.proto.tcpip import OPT_TOA, Segment, find_option_offset

__all__ = ["ClientFilter", "toa", "PayloadPattern", "DEFAULT_SCAN_LIMIT"]

#: Bytes of a first request that ``PayloadPattern`` looks at unless told otherwise.
DEFAULT_SCAN_LIMIT = 4096


def _networks(specs: Sequence[str], key: str) -> tuple[tuple[int, frozenset[int]], ...]:
    """CIDRs (or single addresses) grouped by mask: ``((mask, {network, ...}), ...)``, longest
    prefix first. A lookup costs one AND and one set probe per distinct prefix length."""
    if isinstance(specs, str):
        raise TypeError(f"{key}: give a sequence of CIDRs, not one string")
    groups: dict[int, set[int]] = {}
    for spec in specs:
        if not isinstance(spec, str):
            raise TypeError(f"{key}: {spec!r} is not a string")
        try:
            net = ipaddress.IPv4Network(spec.strip(), strict=True)
        except ValueError as exc:
            if "host bits set" in str(exc):
                loose = ipaddress.IPv4Network(spec.strip(), strict=False)
                raise ConfigError(
                    f"{key}: {spec!r} has host bits set (did you mean {loose}?)"
                ) from None
            raise ConfigError(f"{key}: {spec!r} is not an IPv4 address or CIDR") from None
        groups.setdefault(int(net.netmask), set()).add(int(net.network_address))
    return tuple(
        (mask, frozenset(nets)) for mask, nets in sorted(groups.items(), reverse=True)
    )


class ClientFilter:
    """Accepts or rejects a client IP by CIDR lists.

    ``deny`` wins over ``allow``; an empty ``allow`` allows every address ``deny`` does not
    cover. A plain address is a /32. Raises ``ConfigError`` (one line, quoting the entry) for a
    bad CIDR, including one with host bits set.
    """

    __slots__ = ("_allow", "_deny")

    def __init__(self, allow: Sequence[str] = (), deny: Sequence[str] = ()) -> None:
        self._allow = _networks(allow, "clients allow")
        self._deny = _networks(deny, "clients deny")

    def accepts(self, ip: int) -> bool:
        """True if sessions from client ``ip`` (a host-order int) are to be replayed."""
        for mask, nets in self._deny:
            if ip & mask in nets:
                return False
        if not self._allow:
            return True
        return any(ip & mask in nets for mask, nets in self._allow)


def toa(seg: Segment) -> tuple[int, int] | None:
    """The real client ``(ip, port)`` from the TOA option (kind 254, length 8: port then IPv4
    address, network order) that LVS FULLNAT adds, or None if ``seg`` has none or it does not
    have length 8 (the IPv6 variant, or garbage).

    LVS puts it on the SYN, or on the first data segment; any segment can be asked. Never
    raises on bad bytes: a malformed option list reads as no TOA.
    """
    buf = seg.buf
    pos = find_option_offset(buf, seg.off + seg.ihl, seg.doff, OPT_TOA)
    # find_option_offset guarantees pos + length lies inside the header and the buffer.
    if pos < 0 or buf[pos + 1] != 8:
        return None
    port = buf[pos + 2] << 8 | buf[pos + 3]
    ip = buf[pos + 4] << 24 | buf[pos + 5] << 16 | buf[pos + 6] << 8 | buf[pos + 7]
    return ip, port


class PayloadPattern:
    """A regular expression looked for in the first ``limit`` bytes of a session's first
    request (TCPGO's request_pattern): only matching sessions are replayed.

    ``regex`` is a ``str`` (encoded as UTF-8, so non-ASCII text matches its UTF-8 bytes; inside
    a character class, non-ASCII characters do not work as one character) or ``bytes``. It is
    searched for anywhere in the window; anchor it with ``^`` (or ``\\A``) for a prefix. ``$``
    matches at the end of the window. Raises ``ConfigError`` (one line) for a bad regex and
    ``ValueError`` for a ``limit`` below 1.
    """

    __slots__ = ("pattern", "limit", "_search")

    def __init__(self, regex: str | bytes, limit: int = DEFAULT_SCAN_LIMIT) -> None:
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise ValueError(f"PayloadPattern: limit must be an int >= 1, not {limit!r}")
        raw = regex.encode("utf-8") if isinstance(regex, str) else regex
        try:
            compiled = re.compile(raw)
        except (re.error, OverflowError, RecursionError) as exc:
            # re.error's message is one line and says where ("at position 3").
            raise ConfigError(f"request pattern {regex!r}: bad regular expression: {exc}") from None
        self.pattern = regex
        self.limit = limit
        self._search = compiled.search

    def matches(self, payload: bytes | bytearray | memoryview) -> bool:
        """True if the pattern occurs in the first ``limit`` bytes of ``payload``."""
        # endpos bounds the search without copying the payload.
        return self._search(payload, 0, self.limit) is not None
