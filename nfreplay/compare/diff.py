"""One production response against one target response, with the noise filters.

HTTP: the status code, the headers (names case-insensitive; the per-response headers in
``DEFAULT_IGNORED_HEADERS`` and ``--ignore-header`` names skipped; ``Content-Length`` and
``Transfer-Encoding`` are framing, compared through the body instead), and the body with the
chunked coding and ``Content-Encoding`` gzip/deflate removed; bodies that are JSON on both
sides are compared as values (key order and spacing do not matter; ``--ignore-json-path``
skips subtrees). ``--ignore-regex`` patterns are replaced in bodies and in Redis/raw bytes
before anything is compared. Redis and raw: the bytes of the reply/turn.

The result says identical or not, what differs first (status, then body, then headers) and
where (a header name, a JSON path, a byte offset), and whether the status changed (HTTP: the
status code; Redis: the reply's type, e.g. a value became an error).

Invariants: pure; target bytes are hostile: decompression is capped (``MAX_BODY``), JSON that
is too deep or too large falls back to a byte comparison, nothing recurses on input depth,
and nothing raises on any input.
"""

from __future__ import annotations

import json
import re
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from nfreplay.compare.exchanges import Exchange

__all__ = [
    "DEFAULT_IGNORED_HEADERS",
    "EXCERPT",
    "MAX_BODY",
    "Difference",
    "Options",
    "compare",
    "compile_json_path",
]

#: Headers that differ from one response to the next, or between two deployments of the same
#: content, without saying anything about the build: never compared.
DEFAULT_IGNORED_HEADERS = (
    "date",
    "age",
    "expires",
    "last-modified",
    "etag",
    "x-request-id",
)
#: Framing headers: the body is compared decoded instead.
_FRAMING = ("content-length", "transfer-encoding")
#: A decoded body larger than this is compared as the bytes received.
MAX_BODY = 16 << 20
#: Characters of each side kept in an example.
EXCERPT = 2000
_IGNORED = b"<ignored>"

_Token = tuple[
    str, str | int | None
]  # ("key", name) | ("index", n) | ("any", None) | ("deep", None)


def compile_json_path(text: str) -> tuple[_Token, ...]:
    """``$.meta.time``, ``$.items[*].id``, ``$['a b'][0]``, ``$..id`` -> tokens. Raises
    ``ValueError`` with the reason for anything else."""
    if not text.startswith("$"):
        raise ValueError(f"JSON path {text!r} must start with $")
    tokens: list[_Token] = []
    pos = 1
    name = re.compile(r"[A-Za-z0-9_$-]+|\*")
    while pos < len(text):
        if text.startswith("..", pos):
            tokens.append(("deep", None))
            pos += 2
            m = name.match(text, pos)
            if m is None:
                raise ValueError(f"JSON path {text!r}: a name must follow '..'")
            tokens.append(("any", None) if m.group() == "*" else ("key", m.group()))
            pos = m.end()
        elif text[pos] == ".":
            m = name.match(text, pos + 1)
            if m is None:
                raise ValueError(f"JSON path {text!r}: a name must follow '.' at {pos}")
            tokens.append(("any", None) if m.group() == "*" else ("key", m.group()))
            pos = m.end()
        elif text[pos] == "[":
            m = re.compile(r"\[(\*|[0-9]+|'([^']*)'|\"([^\"]*)\")\]").match(text, pos)
            if m is None:
                raise ValueError(f"JSON path {text!r}: bad [...] at {pos}")
            inner = m.group(1)
            if inner == "*":
                tokens.append(("any", None))
            elif inner.isdigit():
                tokens.append(("index", int(inner)))
            else:
                key = m.group(2) if m.group(2) is not None else m.group(3)
                tokens.append(("key", key))
            pos = m.end()
        else:
            raise ValueError(f"JSON path {text!r}: unexpected {text[pos]!r} at {pos}")
    return tuple(tokens)


def _matches(pattern: Sequence[_Token], path: Sequence[str | int]) -> bool:
    # Small dynamic programme: reach[i] = pattern[:i] can match path[:j].
    n = len(pattern)
    reach = [False] * (n + 1)
    reach[0] = True
    i = 0
    while i < n and pattern[i][0] == "deep":
        i += 1
        reach[i] = reach[i - 1]
    for step in path:
        nxt = [False] * (n + 1)
        for i in range(n):
            if not reach[i]:
                continue
            kind, value = pattern[i]
            if kind == "deep":
                nxt[i] = True  # '..' eats any number of steps
                continue
            if (kind == "any" or (kind == "key" and step == value)
                    or (kind == "index" and step == value and isinstance(step, int))):  # fmt: skip
                nxt[i + 1] = True
        for i in range(n):  # a '..' just reached may also match zero steps
            if nxt[i] and pattern[i][0] == "deep":
                nxt[i + 1] = True
        reach = nxt
    return reach[n]


@dataclass(frozen=True, slots=True)
class Options:
    """The noise filters. ``ignore_headers`` are lower-case names added to the defaults."""

    ignore_headers: frozenset[str] = frozenset()
    ignore_json_paths: tuple[tuple[_Token, ...], ...] = ()
    ignore_regexes: tuple[re.Pattern[bytes], ...] = ()
    use_default_headers: bool = True
    ignored_headers: frozenset[str] = field(init=False)

    def __post_init__(self) -> None:
        names = {h.lower() for h in self.ignore_headers}
        if self.use_default_headers:
            names.update(DEFAULT_IGNORED_HEADERS)
        object.__setattr__(self, "ignored_headers", frozenset(names))

    @classmethod
    def build(
        cls, headers: Iterable[str] = (), json_paths: Iterable[str] = (),
        regexes: Iterable[str] = (),
    ) -> Options:  # fmt: skip
        """From the command line's strings. Raises ``ValueError`` naming a bad one."""
        compiled = []
        for r in regexes:
            try:
                compiled.append(re.compile(r.encode("utf-8", "surrogateescape")))
            except re.error as exc:
                raise ValueError(f"--ignore-regex {r!r}: {exc}") from None
        return cls(
            ignore_headers=frozenset(h.strip().lower() for h in headers),
            ignore_json_paths=tuple(compile_json_path(p) for p in json_paths),
            ignore_regexes=tuple(compiled),
        )


@dataclass(frozen=True, slots=True)
class Difference:
    """The comparison of one pair. ``kind`` is "" when identical, else the first thing that
    differs: ``status``, ``body``, ``header``, ``incomplete`` or ``bytes``; ``where`` locates
    it (``header content-type``, ``$.items[0].id``, ``byte 17``). ``production`` and
    ``target`` are text excerpts of each side (capped, not escaped: escape when showing)."""

    identical: bool
    status_changed: bool
    kind: str = ""
    where: str = ""
    production: str = ""
    target: str = ""
    statuses: tuple[str, str] = ("", "")


_SAME = Difference(True, False)


def _scrub(data: bytes, regexes: Sequence[re.Pattern[bytes]]) -> bytes:
    for r in regexes:
        data = r.sub(_IGNORED, data)
    return data


def _first_diff(a: bytes, b: bytes) -> int:
    n = min(len(a), len(b))
    lo, hi = 0, n
    # binary search on prefix equality: fast for long equal prefixes
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if a[:mid] == b[:mid]:
            lo = mid
        else:
            hi = mid - 1
    return lo


def _excerpt(data: bytes, at: int = 0) -> str:
    start = max(0, at - EXCERPT // 4)
    text = data[start : start + EXCERPT].decode("utf-8", "replace")
    return ("…" if start else "") + text + ("…" if start + EXCERPT < len(data) else "")


def _decode_body(body: bytes, encoding: str | None) -> bytes:
    """The body without its content codings (gzip, deflate); as received if another coding,
    if it does not decode, or if it decodes to more than ``MAX_BODY``."""
    if not encoding:
        return body
    data = body
    for coding in reversed([c.strip().lower() for c in encoding.split(",")]):
        if coding in ("gzip", "x-gzip"):
            wbits = 16 + zlib.MAX_WBITS
        elif coding == "deflate":
            wbits = zlib.MAX_WBITS if data[:1] == b"\x78" else -zlib.MAX_WBITS
        elif coding in ("identity", ""):
            continue
        else:
            return body
        try:
            d = zlib.decompressobj(wbits)
            out = d.decompress(data, MAX_BODY + 1)
        except zlib.error:
            return body
        if len(out) > MAX_BODY or d.unconsumed_tail:
            return body
        data = out
    return data


def _load_json(body: bytes) -> tuple[bool, Any]:
    head = body.lstrip()[:1]
    if head not in (b"{", b"[") or len(body) > MAX_BODY:
        return False, None
    try:
        return True, json.loads(body)
    except (ValueError, RecursionError, UnicodeDecodeError):
        return False, None


def _path_text(path: Sequence[str | int]) -> str:
    out = "$"
    for step in path:
        if isinstance(step, int):
            out += f"[{step}]"
        elif re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", step):
            out += "." + step
        else:
            out += "[" + json.dumps(step)[:80] + "]"
    return out


def _json_diff(a: Any, b: Any, ignore: Sequence[Sequence[_Token]]) -> str | None:
    """The first path (document order) where ``a`` and ``b`` differ, or None."""
    stack: list[tuple[tuple[str | int, ...], Any, Any]] = [((), a, b)]
    missing = object()
    while stack:
        path, x, y = stack.pop()
        if path and any(_matches(p, path) for p in ignore):
            continue
        if isinstance(x, dict) and isinstance(y, dict):
            keys = list(x) + [k for k in y if k not in x]
            for k in reversed(keys):
                stack.append(((*path, k), x.get(k, missing), y.get(k, missing)))
        elif isinstance(x, list) and isinstance(y, list):
            for i in reversed(range(max(len(x), len(y)))):
                stack.append(((*path, i), x[i] if i < len(x) else missing,
                              y[i] if i < len(y) else missing))  # fmt: skip
        elif not _same_scalar(x, y):
            return _path_text(path)
    return None


def _same_scalar(x: Any, y: Any) -> bool:
    """JSON scalars (or a container against something else): 1 and 1.0 are the same number,
    true and 1 are not."""
    if isinstance(x, bool) or isinstance(y, bool) or type(x) is not type(y):
        numbers = (int, float)
        if isinstance(x, bool) or isinstance(y, bool):
            return type(x) is type(y) and bool(x == y)
        if not (isinstance(x, numbers) and isinstance(y, numbers)):
            return False
    return bool(x == y)


def _head_text(x: Exchange) -> str:
    r = x.http
    if r is None:
        return ""
    lines = [f"HTTP/{r.version} {r.status} {r.reason}"]
    lines += [f"{k}: {v}" for k, v in r.headers[:60]]
    return "\n".join(lines)[:EXCERPT] + "\n\n"


def _status(x: Exchange) -> str:
    if x.http is not None:
        return str(x.http.status)
    if x.protocol == "redis" and x.response:
        return {"+": "ok", "-": "error", ":": "integer", "$": "bulk", "*": "array",
                "_": "null"}.get(chr(x.response[0]), "other")  # fmt: skip
    return "" if x.response else "none"


def compare(production: Exchange, target: Exchange, options: Options) -> Difference:
    """Compare the responses of a production exchange and of its target counterpart."""
    p_status, t_status = _status(production), _status(target)
    changed = p_status != t_status
    statuses = (p_status, t_status)
    if production.http is not None and target.http is not None:
        return _compare_http(production, target, options, changed, statuses)
    a = _scrub(production.response, options.ignore_regexes)
    b = _scrub(target.response, options.ignore_regexes)
    if a == b:
        if production.complete == target.complete:
            return _SAME
        return Difference(False, changed, "incomplete", "end of response",
                          _excerpt(a), _excerpt(b), statuses)  # fmt: skip
    at = _first_diff(a, b)
    return Difference(False, changed, "status" if changed and production.http else "bytes",
                      f"byte {at}", _excerpt(a, at), _excerpt(b, at), statuses)  # fmt: skip


def _compare_http(
    production: Exchange, target: Exchange, options: Options, changed: bool,
    statuses: tuple[str, str],
) -> Difference:  # fmt: skip
    p, t = production.http, target.http
    assert p is not None and t is not None
    regexes = options.ignore_regexes
    a = _scrub(_decode_body(p.body, p.header("content-encoding")), regexes)
    b = _scrub(_decode_body(t.body, t.header("content-encoding")), regexes)
    body_where = ""
    at = 0
    if a != b:
        ja, va = _load_json(a)
        jb, vb = _load_json(b)
        if ja and jb:
            body_where = _json_diff(va, vb, options.ignore_json_paths) or ""
        else:
            at = _first_diff(a, b)
            body_where = f"byte {at}"
    header_where = ""
    skip = options.ignored_headers.union(_FRAMING)
    ph: dict[str, list[str]] = {}
    th: dict[str, list[str]] = {}
    for headers, into in ((p.headers, ph), (t.headers, th)):
        for k, v in headers:
            if k not in skip:
                into.setdefault(k, []).append(
                    _scrub(v.encode("latin-1"), regexes).decode("latin-1")
                )
    for name in sorted(set(ph) | set(th)):
        if ph.get(name) != th.get(name):
            header_where = f"header {name}"
            break
    if changed:
        kind, where = "status", f"{p.status} -> {t.status}"
    elif body_where:
        kind, where = "body", body_where
    elif header_where:
        kind, where = "header", header_where
    elif production.complete != target.complete:
        kind, where = "incomplete", "end of response"
    else:
        return _SAME
    return Difference(False, changed, kind, where, _head_text(production) + _excerpt(a, at),
                      _head_text(target) + _excerpt(b, at), statuses)  # fmt: skip
