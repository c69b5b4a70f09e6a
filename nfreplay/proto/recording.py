"""The recording format shared by the recorders (nfreplay-online and nfreplay-assist with
``--record-responses DIR``) and ``nfreplay compare``: file names and the session-map line.

Online side, one directory, files rotated by size with a 6-digit sequence number:

* ``production-NNNNNN.pcapng``: the recorded sessions' packets as captured on the online host,
  both directions (the clients' requests and production's responses). One interface, link type
  RAW (101), IPv4, nanosecond timestamps (``if_tsresol`` = 9), online clock.
* ``to-target-NNNNNN.pcapng``: the packets nfreplay-online sent to the target for those
  sessions, as sent (source = the client address the target saw, destination = the target);
  timestamp = send time, online clock.
* ``sessions-NNNNNN.jsonl``: one ``SessionLine`` per replayed session copy.

Assist side, one directory:

* ``target-NNNNNN.pcapng``: the target's reply packets in full (source = the target,
  destination = the session's ``sent_client``), captured in NFQUEUE before the DROP;
  timestamps on the assistant's clock.

Invariants: names and lines are pure values (no I/O here). ``decode_line`` accepts exactly what
``encode_line`` writes, plus key order and spacing; anything else raises ``WireError`` (a
recording is read from disk, so bad bytes are the file's fault, not the caller's).
"""

from __future__ import annotations

import ipaddress
import json
import re
from dataclasses import dataclass
from typing import Final

from nfreplay.errors import WireError

__all__ = [
    "KINDS",
    "ONLINE_KINDS",
    "TARGET_KINDS",
    "Endpoint",
    "SessionLine",
    "decode_line",
    "encode_line",
    "file_name",
    "format_endpoint",
    "parse_endpoint",
    "parse_file_name",
]

#: Every kind of file, with its extension.
KINDS: Final = {
    "production": "pcapng",
    "to-target": "pcapng",
    "sessions": "jsonl",
    "target": "pcapng",
}
#: The kinds written by nfreplay-online and by nfreplay-assist.
ONLINE_KINDS: Final = ("production", "to-target", "sessions")
TARGET_KINDS: Final = ("target",)

_SEQ_MAX = 999_999
_NAME = re.compile(r"(production|to-target|sessions|target)-([0-9]{6})\.(pcapng|jsonl)")

#: An IPv4 address (as text) and a port.
Endpoint = tuple[str, int]


def file_name(kind: str, seq: int) -> str:
    """``production-000001.pcapng`` and the like. Raises ``ValueError`` for an unknown kind or
    a sequence number outside 0..999999."""
    if kind not in KINDS:
        raise ValueError(f"recording: unknown file kind {kind!r}")
    if not 0 <= seq <= _SEQ_MAX:
        raise ValueError(f"recording: sequence number {seq} outside 0..{_SEQ_MAX}")
    return f"{kind}-{seq:06d}.{KINDS[kind]}"


def parse_file_name(name: str) -> tuple[str, int] | None:
    """``(kind, seq)`` of a recording file's base name, or None if it is not one."""
    m = _NAME.fullmatch(name)
    if m is None or KINDS[m.group(1)] != m.group(3):
        return None
    return m.group(1), int(m.group(2))


def parse_endpoint(text: str) -> Endpoint:
    """``"198.18.1.2:40000"`` -> ``("198.18.1.2", 40000)``. Raises ``WireError``."""
    if not isinstance(text, str):
        raise WireError(f"not an ip:port: {text!r}")
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 0xFFFF:
        raise WireError(f"not an ip:port: {text[:60]!r}")
    try:
        addr = ipaddress.IPv4Address(host)
    except ValueError:
        raise WireError(f"not an IPv4 address: {host[:60]!r}") from None
    return str(addr), int(port)


def format_endpoint(ep: Endpoint) -> str:
    """``("198.18.1.2", 40000)`` -> ``"198.18.1.2:40000"``."""
    return f"{ep[0]}:{ep[1]}"


@dataclass(frozen=True, slots=True)
class SessionLine:
    """One replayed copy of one production session.

    ``client`` and ``server`` are the production connection's ends; ``sent_client`` is the
    client address the target saw (differs from ``client`` with a client pool or a copy);
    ``target`` is where it was sent; ``copy`` numbers the copies from 0 (``--copies``);
    ``start`` is the time of the production SYN, in seconds on the online host's clock.
    """

    client: Endpoint
    server: Endpoint
    sent_client: Endpoint
    target: Endpoint
    copy: int
    start: float


_KEYS: Final = ("client", "server", "sent_client", "target", "copy", "start")


def encode_line(line: SessionLine) -> str:
    """The JSON line for ``line``, with its newline."""
    obj = {
        "client": format_endpoint(line.client),
        "server": format_endpoint(line.server),
        "sent_client": format_endpoint(line.sent_client),
        "target": format_endpoint(line.target),
        "copy": line.copy,
        "start": line.start,
    }
    return json.dumps(obj, separators=(", ", ": ")) + "\n"


def decode_line(text: str | bytes) -> SessionLine:
    """Parse one line of a ``sessions-NNNNNN.jsonl`` file. Raises ``WireError`` if it is not
    a JSON object with the six keys and values of the right form (unknown keys are ignored, so
    a later recorder may add some)."""
    try:
        obj = json.loads(text)
    except (ValueError, RecursionError):
        raise WireError("session line: not JSON") from None
    if not isinstance(obj, dict):
        raise WireError("session line: not a JSON object")
    missing = [k for k in _KEYS if k not in obj]
    if missing:
        raise WireError(f"session line: missing {', '.join(missing)}")
    copy, start = obj["copy"], obj["start"]
    if type(copy) is not int or not 0 <= copy < 1 << 16:
        raise WireError("session line: copy must be an integer 0..65535")
    if type(start) not in (int, float) or not 0 <= start < 1e11:
        raise WireError("session line: start must be seconds since the epoch")
    return SessionLine(
        client=parse_endpoint(obj["client"]),
        server=parse_endpoint(obj["server"]),
        sent_client=parse_endpoint(obj["sent_client"]),
        target=parse_endpoint(obj["target"]),
        copy=copy,
        start=float(start),
    )
