"""Redis RESP framing (RESP2 and RESP3) over a reassembled byte stream.

Invariants: pure; untrusted input never raises and never recurses (aggregates are counted
with an integer, not a call stack, so a reply nested a million deep costs a loop, not a
``RecursionError``). ``None`` means "not enough bytes yet"; ``MALFORMED`` that the bytes are
not RESP (the caller treats the rest of the stream as opaque).
"""

from __future__ import annotations

import re
from typing import Final

__all__ = [
    "COMMANDS",
    "MALFORMED",
    "command_name",
    "looks_like_resp",
    "parse_command",
    "parse_reply",
]

MALFORMED: Final = -1
# A count or length above this is taken as garbage, not as a huge value.
_MAX_COUNT = 1 << 32
_INT = re.compile(rb"-?[0-9]{1,19}")
_LINE_TYPES = frozenset(b"+-:_,#(")
_BULK_TYPES = frozenset(b"$!=")
_ARRAY_TYPES = frozenset(b"*~>")
_MAP_TYPES = frozenset(b"%|")

#: Commands recognised as the first word of an inline (telnet-style) request.
COMMANDS = frozenset(
    b"PING ECHO AUTH SELECT QUIT INFO GET SET SETEX SETNX GETSET MGET MSET DEL EXISTS EXPIRE "
    b"TTL TYPE KEYS SCAN INCR INCRBY DECR DECRBY APPEND STRLEN HGET HSET HMGET HMSET HGETALL "
    b"HDEL HKEYS HLEN LPUSH RPUSH LPOP RPOP LRANGE LLEN SADD SREM SMEMBERS SCARD SISMEMBER "
    b"ZADD ZRANGE ZREM ZSCORE ZCARD DBSIZE FLUSHDB FLUSHALL CLIENT CONFIG COMMAND HELLO".split()
)


def _line(data: bytes, pos: int) -> tuple[bytes, int] | None:
    eol = data.find(b"\r\n", pos)
    if eol < 0:
        return None
    return data[pos:eol], eol + 2


def _count(text: bytes) -> int | None:
    if _INT.fullmatch(text) is None:
        return None
    n = int(text)
    return n if n < _MAX_COUNT else None


def parse_reply(data: bytes, pos: int) -> int | None:
    """End offset of the one reply at ``pos``; None if incomplete; ``MALFORMED``."""
    need = 1
    while need:
        if pos >= len(data):
            return None
        kind = data[pos]
        got = _line(data, pos + 1)
        if got is None:
            return None if len(data) - pos < 65536 else MALFORMED
        text, pos = got
        need -= 1
        if kind in _LINE_TYPES:
            continue
        n = _count(text)
        if n is None or n < -1:
            return MALFORMED
        if kind in _BULK_TYPES:
            if n >= 0:
                if len(data) < pos + n + 2:
                    return None
                if data[pos + n : pos + n + 2] != b"\r\n":
                    return MALFORMED
                pos += n + 2
        elif kind in _ARRAY_TYPES:
            need += max(n, 0)
        elif kind in _MAP_TYPES:
            # an attribute (|) precedes the value it describes: that value is still needed
            need += 2 * max(n, 0) + (kind == ord("|"))
        else:
            return MALFORMED
    return pos


def parse_command(data: bytes, pos: int) -> tuple[int, list[bytes]] | int | None:
    """``(end, arguments)`` of the command at ``pos`` (an array of bulk strings, or an inline
    command line); None if incomplete; ``MALFORMED``. Empty inline lines are skipped, as
    Redis does."""
    while True:
        if pos >= len(data):
            return None
        if data[pos] == ord("*"):
            got = _line(data, pos + 1)
            if got is None:
                return None if len(data) - pos < 65536 else MALFORMED
            n = _count(got[0])
            if n is None or n < 0 or n > 1 << 20:
                return MALFORMED
            pos = got[1]
            args = []
            for _ in range(n):
                if pos >= len(data):
                    return None
                if data[pos] != ord("$"):
                    return MALFORMED
                got = _line(data, pos + 1)
                if got is None:
                    return None
                size = _count(got[0])
                if size is None or size < 0:
                    return MALFORMED
                pos = got[1]
                if len(data) < pos + size + 2:
                    return None
                args.append(data[pos : pos + size])
                pos += size + 2
            return pos, args
        eol = data.find(b"\n", pos)
        if eol < 0:
            return None if len(data) - pos < 65536 else MALFORMED
        words = data[pos:eol].split()
        pos = eol + 1
        if words:
            return pos, words


def command_name(args: list[bytes]) -> str:
    """The command's name, upper case, printable (at most 32 characters)."""
    if not args:
        return "?"
    name = args[0][:32].decode("latin-1").upper()
    return (
        "".join(c if c.isprintable() and not c.isspace() else "?" for c in name) or "?"
    )


def looks_like_resp(data: bytes) -> bool:
    """Whether a client stream starts like Redis: ``*<digits>\\r\\n$`` or an inline command
    whose first word is a known command."""
    if data[:1] == b"*":
        return re.match(rb"\*[0-9]{1,7}\r\n\$", data) is not None
    first = data[:32].split(None, 1)[:1]
    return bool(first) and first[0].upper() in COMMANDS and b"\n" in data[:65536]
