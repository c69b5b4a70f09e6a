"""One connection -> its exchanges (a request and its response), per protocol.

* ``http``: HTTP/1.x requests framed one after the other (pipelining included), each matched
  with the next response; the endpoint is the method and the path without its query string.
* ``redis``: RESP commands (arrays of bulk strings, inline commands), one reply each; the
  endpoint is the command's name, upper case.
* ``raw``: anything else, in turns: the client's bytes until the server answers, the
  server's bytes until the client speaks again. Turns are cut by the server's ACK numbers
  (how much of the client's stream the server had received when it sent each byte), not by
  capture times, so it works the same when the two directions were captured on two hosts
  with two clocks. The endpoint is the service port (``port 5432``).

The protocol is chosen by sniffing production's first request bytes and imposed on the
target's side, so both sides of a pair have the same endpoints. Bytes after a gap are not
parsed: the exchange that runs into a gap is marked ``gap`` (it cannot be compared), and
nothing after it is guessed.

Invariants: pure; untrusted input never raises (a stream that stops parsing as its protocol
ends with one opaque exchange holding the rest).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from nfreplay.compare import http1, resp
from nfreplay.compare.reassembly import Assembled
from nfreplay.proto.seq import seq_diff

__all__ = ["PROTOCOLS", "Exchange", "sniff", "split"]

PROTOCOLS = ("http", "redis", "raw")
_ENDPOINT_MAX = 120


@dataclass(frozen=True, slots=True)
class Exchange:
    """A request and its response.

    ``request``/``response`` are their bytes in the client and server streams
    (``response`` is empty when the server never answered). ``http`` is the parsed HTTP
    response (None for other protocols or when it could not be parsed). ``request_done``:
    capture time of the request's last byte; ``response_first``: of the response's first
    byte (None without a response), each on the clock of the host that captured that
    direction. ``complete``: the response is whole (its framing says so, or the stream
    ended). ``gap``: the request or the response runs into bytes missing from the capture.
    """

    protocol: str
    endpoint: str
    request: bytes
    response: bytes
    http: http1.Response | None
    request_done: float | None
    response_first: float | None
    complete: bool
    gap: bool


def sniff(client: bytes) -> str:
    """The protocol of a client stream from its first bytes: ``http``, ``redis`` or ``raw``."""
    if http1.looks_like_request(client):
        return "http"
    if resp.looks_like_resp(client):
        return "redis"
    return "raw"


def _printable(text: str) -> str:
    text = text[:_ENDPOINT_MAX]
    return "".join(c if c.isprintable() else "?" for c in text)


def _make(
    protocol: str,
    endpoint: str,
    client: Assembled,
    server: Assembled,
    req: tuple[int, int],
    res: tuple[int, int],
    http: http1.Response | None,
    complete: bool,
    gap: bool,
) -> Exchange:
    return Exchange(
        protocol=protocol,
        endpoint=endpoint,
        request=client.data[req[0] : req[1]],
        response=server.data[res[0] : res[1]],
        http=http,
        request_done=client.time_at(req[1] - 1) if req[1] > req[0] else None,
        response_first=server.time_at(res[0]) if res[1] > res[0] else None,
        complete=complete,
        gap=gap,
    )


def split(
    client: Assembled, server: Assembled, protocol: str, port: int
) -> list[Exchange]:
    """The exchanges of one connection whose directions are ``client`` and ``server``.
    ``port`` names the endpoint of ``raw`` exchanges."""
    if protocol == "http":
        return _split_http(client, server, f"port {port}")
    if protocol == "redis":
        return _split_redis(client, server, f"port {port}")
    return _split_raw(client, server, f"port {port}")


def _eof(s: Assembled) -> bool:
    """Whether the stream's data ends where the stream ends (no gap cut it)."""
    return not s.gaps


def _split_http(client: Assembled, server: Assembled, fallback: str) -> list[Exchange]:
    out: list[Exchange] = []
    cdata, sdata = client.data, server.data
    cpos = spos = 0
    while cpos < len(cdata):
        req = http1.parse_request(cdata, cpos)
        if req is None:
            # not HTTP (any more), or a head cut by a gap or by the end of the capture
            rest = (cpos, len(cdata))
            out.append(_make("http", fallback, client, server, rest, (spos, len(sdata)),
                             None, _eof(server), bool(client.gaps) or bool(server.gaps)))  # fmt: skip
            return out
        endpoint = _printable(f"{req.method} {req.path}")
        cut = not req.complete and bool(client.gaps)
        res = http1.parse_response(sdata, spos, req.method, at_eof=_eof(server))
        if res is None:
            # No response bytes (unanswered, or missing in a gap), or bytes that are not a
            # response head (cut, or garbage): the rest of the server stream, opaque.
            rest = (spos, len(sdata))
            gap = cut or bool(server.gaps)
            out.append(_make("http", endpoint, client, server, (req.start, req.end), rest,
                             None, False, gap))  # fmt: skip
            if rest[1] > rest[0] or not req.complete:
                return out
            cpos = req.end
            continue
        gap = cut or (not res.complete and bool(server.gaps))
        out.append(_make("http", endpoint, client, server, (req.start, req.end),
                         (res.start, res.end), res, res.complete, gap))  # fmt: skip
        if res.malformed or not req.complete:
            return out
        cpos, spos = req.end, res.end
    return out


def _split_redis(client: Assembled, server: Assembled, fallback: str) -> list[Exchange]:
    out: list[Exchange] = []
    cdata, sdata = client.data, server.data
    cpos = spos = 0
    while cpos < len(cdata):
        cmd = resp.parse_command(cdata, cpos)
        if cmd is None or isinstance(cmd, int):
            out.append(_make("redis", fallback, client, server, (cpos, len(cdata)),
                             (spos, len(sdata)), None, _eof(server),
                             bool(client.gaps) and cmd is None))  # fmt: skip
            return out
        end, args = cmd
        endpoint = resp.command_name(args)
        rend = resp.parse_reply(sdata, spos)
        if rend is None or rend == resp.MALFORMED:
            gap = rend is None and bool(server.gaps)
            out.append(_make("redis", endpoint, client, server, (cpos, end),
                             (spos, len(sdata)), None, False, gap))  # fmt: skip
            if rend == resp.MALFORMED or spos < len(sdata):
                return out
            cpos = end
            continue
        out.append(_make("redis", endpoint, client, server, (cpos, end), (spos, rend), None,
                         True, False))  # fmt: skip
        cpos, spos = end, rend
    return out


def _split_raw(client: Assembled, server: Assembled, endpoint: str) -> list[Exchange]:
    """Turns cut at the client offsets the server's bytes acknowledge."""
    out: list[Exchange] = []
    cdata, sdata = client.data, server.data
    # (client offset acknowledged, server offset where that run starts)
    runs: list[tuple[int, int]] = []
    last = 0
    for start, ack in zip(server.starts, server.acks, strict=True):
        if start >= len(sdata):
            break
        acked = last if ack is None else seq_diff(ack, client.base_seq)
        acked = min(max(acked, last), len(cdata))  # monotonic, within what we have
        if not runs or acked > runs[-1][0]:
            runs.append((acked, start))
        last = acked
    cpos = 0
    for i, (acked, sstart) in enumerate(runs):
        send = runs[i + 1][1] if i + 1 < len(runs) else len(sdata)
        out.append(_make("raw", endpoint, client, server, (cpos, acked), (sstart, send), None,
                         True, False))  # fmt: skip
        cpos = acked
    if cpos < len(
        cdata
    ):  # the client's last words, never answered (in what was captured)
        out.append(_make("raw", endpoint, client, server, (cpos, len(cdata)), (0, 0), None,
                         _eof(server), bool(server.gaps)))  # fmt: skip
    if out and (client.gaps or server.gaps):
        out[-1] = dataclasses.replace(out[-1], gap=True)
    return out
