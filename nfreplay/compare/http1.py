"""HTTP/1.x framing over a reassembled byte stream: where each request and response starts
and ends, and what it says (RFC 9112 §6 message body length).

Invariants: pure functions over ``bytes``; the input is untrusted (the target runs the build
under test). Nothing here raises on bad bytes: a message that cannot be framed comes back as
``None`` (not enough bytes yet) or with ``malformed`` set, and the caller treats the rest of
the stream as opaque. Header blocks larger than ``MAX_HEADER`` are malformed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = [
    "MAX_HEADER",
    "METHODS",
    "Request",
    "Response",
    "looks_like_request",
    "parse_request",
    "parse_response",
]

MAX_HEADER = 64 * 1024
METHODS = frozenset(
    b"GET HEAD POST PUT DELETE CONNECT OPTIONS TRACE PATCH PROPFIND PROPPATCH MKCOL COPY "
    b"MOVE LOCK UNLOCK SEARCH PURGE".split()
)
_REQUEST_LINE = re.compile(rb"([A-Z][A-Z_-]{0,19}) (\S{1,65536}) HTTP/1\.[0-9]\r?\n")
_STATUS_LINE = re.compile(rb"HTTP/(1\.[0-9]) ([0-9]{3})(?: ([^\r\n]*))?\r?\n")
_HEADER_END = re.compile(rb"\r?\n\r?\n")
_CHUNK_SIZE = re.compile(rb"([0-9A-Fa-f]{1,16})[^\r\n]*\r?\n")

Headers = tuple[tuple[str, str], ...]


def looks_like_request(data: bytes) -> bool:
    """Whether a client stream starts like an HTTP/1.x request: a known method token, a
    space, and (if the line is complete) a request line ending in HTTP/1.x."""
    token, sep, _ = data[:24].partition(b" ")
    if not sep or token not in METHODS:
        return False
    eol = data.find(b"\n", 0, 8192)
    return eol < 0 or _REQUEST_LINE.match(data, 0, eol + 1) is not None


def _header_block(data: bytes, pos: int) -> tuple[int, int] | None:
    """``(end of headers, end of blank line)`` from ``pos``; None if not complete yet;
    ``(-1, -1)`` if it is too large."""
    m = _HEADER_END.search(data, pos, pos + MAX_HEADER)
    if m is None:
        return (-1, -1) if len(data) - pos >= MAX_HEADER else None
    return m.start(), m.end()


def _headers(block: bytes) -> Headers:
    out = []
    for line in block.split(b"\n"):
        name, sep, value = line.rstrip(b"\r").partition(b":")
        if sep and name and not name[-1:].isspace():
            out.append(
                (name.decode("latin-1").lower(), value.strip().decode("latin-1"))
            )
    return tuple(out)


def _get(headers: Headers, name: str) -> str | None:
    for k, v in headers:
        if k == name:
            return v
    return None


def _chunked(headers: Headers) -> bool:
    te = _get(headers, "transfer-encoding")
    return te is not None and te.lower().rstrip().endswith("chunked")


def _content_length(headers: Headers) -> int | None:
    """The Content-Length, None if absent, -1 if unusable (two different values, not a
    number)."""
    values = {v.strip() for k, v in headers if k == "content-length"}
    if not values:
        return None
    if len(values) > 1:
        return -1
    value = values.pop()
    return int(value) if value.isdigit() and len(value) < 19 else -1


def _dechunk(data: bytes, pos: int) -> tuple[int, bytes, bool] | None:
    """Decode a chunked body at ``pos``: ``(end, body, ok)``; None if incomplete; ``ok`` False
    if it is malformed (then ``end`` is where decoding stopped)."""
    parts: list[bytes] = []
    while True:
        m = _CHUNK_SIZE.match(data, pos)
        if m is None:
            eol = data.find(b"\n", pos)
            if eol < 0 and len(data) - pos < 4096:
                return None
            return pos, b"".join(parts), False
        size = int(m.group(1), 16)
        pos = m.end()
        if size == 0:
            # trailer fields, then the blank line
            while True:
                eol = data.find(b"\n", pos)
                if eol < 0:
                    return None
                line = data[pos:eol].rstrip(b"\r")
                pos = eol + 1
                if not line:
                    return pos, b"".join(parts), True
        if len(data) < pos + size:
            return None
        parts.append(data[pos : pos + size])
        pos += size
        if data[pos : pos + 2] == b"\r\n":
            pos += 2
        elif data[pos : pos + 1] == b"\n":
            pos += 1
        elif len(data) - pos < 2:
            return None
        else:
            return pos, b"".join(parts), False


@dataclass(frozen=True, slots=True)
class Request:
    """One request: ``start``..``end`` in the client stream, its method and target."""

    start: int
    end: int
    method: str
    target: str
    headers: Headers
    complete: bool

    @property
    def path(self) -> str:
        """The target without its query string."""
        return self.target.split("?", 1)[0]


def parse_request(data: bytes, pos: int) -> Request | None:
    """The request at ``pos``. None if ``data`` ends before its head does, or if it is not an
    HTTP/1.x request (``data[pos:]`` is then opaque). A body cut by the end of ``data`` gives
    ``complete`` False and ``end`` = ``len(data)``."""
    while data.startswith(b"\r\n", pos):  # RFC 9112 §2.2: ignore CRLFs before a request
        pos += 2
    hb = _header_block(data, pos)
    if hb is None or hb[0] < 0:
        return None
    m = _REQUEST_LINE.match(data, pos, hb[1])
    if m is None:
        return None
    headers = _headers(data[m.end() : hb[0]])
    method = m.group(1).decode("latin-1")
    target = m.group(2).decode("latin-1")
    body = hb[1]
    if _chunked(headers):
        chunk = _dechunk(data, body)
        if chunk is None:
            return Request(pos, len(data), method, target, headers, False)
        return Request(pos, chunk[0], method, target, headers, chunk[2])
    length = _content_length(headers) or 0
    if length < 0:
        return Request(pos, len(data), method, target, headers, False)
    end = body + length
    if end > len(data):
        return Request(pos, len(data), method, target, headers, False)
    return Request(pos, end, method, target, headers, True)


@dataclass(frozen=True, slots=True)
class Response:
    """One final response (after any 1xx interim ones, kept in ``interim``):
    ``start``..``end`` in the server stream. ``body`` is the message body with the chunked
    coding removed (content codings such as gzip are left as they are). ``complete`` is
    False when the stream ends inside it; ``malformed`` when its framing is broken (then
    ``end`` is the end of the stream and ``body`` the bytes after the head)."""

    start: int
    end: int
    version: str
    status: int
    reason: str
    headers: Headers
    body: bytes
    complete: bool
    malformed: bool = False
    interim: tuple[int, ...] = ()

    def header(self, name: str) -> str | None:
        """The first value of header ``name`` (lower case)."""
        return _get(self.headers, name)


def parse_response(data: bytes, pos: int, method: str, at_eof: bool) -> Response | None:
    """The response at ``pos`` to a ``method`` request. None if ``data`` ends before its head
    does or if it is not an HTTP/1.x response. ``at_eof``: the stream ends with ``data`` (a
    body without length runs until it; otherwise it is reported incomplete)."""
    start = pos
    interim: list[int] = []
    while True:
        hb = _header_block(data, pos)
        if hb is None or hb[0] < 0:
            return None
        m = _STATUS_LINE.match(data, pos, hb[1])
        if m is None:
            return None
        status = int(m.group(2))
        if 100 <= status < 200 and status != 101:
            interim.append(status)
            pos = hb[1]
            continue
        break
    version = m.group(1).decode()
    reason = (m.group(3) or b"").decode("latin-1")
    headers = _headers(data[m.end() : hb[0]])
    body_at = hb[1]

    def done(
        end: int, body: bytes, complete: bool = True, malformed: bool = False
    ) -> Response:
        return Response(start, end, version, status, reason, headers, body, complete,
                        malformed, tuple(interim))  # fmt: skip

    if method == "HEAD" or status in (101, 204, 304):
        return done(body_at, b"")
    if _chunked(headers):
        chunk = _dechunk(data, body_at)
        if chunk is None:
            return done(len(data), data[body_at:], complete=False)
        if not chunk[2]:
            return done(len(data), data[body_at:], complete=False, malformed=True)
        return done(chunk[0], chunk[1])
    length = _content_length(headers)
    if length is not None and length < 0:
        return done(len(data), data[body_at:], malformed=True)
    if length is None:
        return done(len(data), data[body_at:], complete=at_eof)
    end = body_at + length
    if end > len(data):
        return done(len(data), data[body_at:], complete=False)
    return done(end, data[body_at:end])
