"""Configuration: one TOML file (plus command-line overrides) into frozen dataclasses.

Invariants:
  * The dataclasses below are the only source of defaults (those of the session machine's
    and the assist loop's settings are read from their ``Params`` and ``Limits``, and the
    commands' ``--help`` reads them here); ``_SCHEMA`` is the only source of parsing and
    validation. An import-time check keeps the two in step (every dataclass field
    is filled by exactly one schema key, and every default parses to itself).
  * Every operator-facing error is a ``ConfigError`` whose one-line message starts with the
    dotted key it is about (``online.target.port: must be 1-65535, got 70000``); only file
    errors (missing file, TOML syntax) start with the file name instead.
  * Unknown sections and keys are errors: a typo must never silently fall back to a default.
  * Misusing the API (an unknown ``role``) raises ``ValueError``, not ``ConfigError``.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import math
import os
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from nfreplay.errors import ConfigError
from nfreplay.limits import Limits
from nfreplay.proto import tunnel as _TUNNEL
from nfreplay.session.machine import Params

# The defaults of the settings the session machine and the assist loop take are theirs:
# written once, there.
_SESSION = Params(target_ip=0, target_port=0)
_LIMITS = Limits()

__all__ = [
    "DEFAULT_PATH",
    "CONTROL_PORT",
    "ROLES",
    "INSTANCE_RE",
    "FLAG_HINTS",
    "General",
    "Online",
    "Assist",
    "Target",
    "Config",
    "load",
    "keys",
]

DEFAULT_PATH = "/etc/nfreplay/nfreplay.toml"
"""Read by ``load(None, ...)`` when it exists (looked up at call time, so tests can patch it)."""

CONTROL_PORT = 36524
"""The tcpcopy/intercept control-channel port; the default for ``online.assistants`` entries."""

ROLES = ("online", "assist", "target", "status")
"""Values accepted by ``load(role=...)``; each of the first three requires its own section's keys."""

INSTANCE_RE = re.compile(r"[A-Za-z0-9_.-]{1,32}")
"""What ``general.instance`` must fully match; it ends up in rule comments and file names."""

FLAG_HINTS: Mapping[str, str] = {
    "online.service": "--service",
    "online.target": "--target",
    "online.assistants": "--assistant",
    "assist.target": "--target",
    "assist.clients": "--clients",
    "target.clients": "--clients",
    "target.via": "--via",
}
"""The command-line flag named in the "required" error of each required key."""


# --------------------------------------------------------------------------------------------
# The parsed configuration. Required keys have None / () here, meaning "not set"; after
# ``load(role=R)`` the required keys of section R are guaranteed to be set.


@dataclass(frozen=True)
class General:
    """``[general]``: settings shared by every role."""

    instance: str = "default"
    state_dir: str = "/run/nfreplay"
    backend: Literal["auto", "nft", "legacy"] = "auto"
    log_level: Literal["debug", "info", "warning", "error"] = "info"


@dataclass(frozen=True)
class _Daemon:
    """What both daemons ([online], [assist]) have: log, metrics and recording settings."""

    stats_interval: float = 30.0  # seconds between two stats lines in the log; 0: none
    metrics_ip: str = "127.0.0.1"  # Prometheus /metrics; a bare port listens on loopback
    metrics_port: int | None = None  # None: no metrics endpoint
    record_responses: str = ""  # directory for `nfreplay compare`'s recording; "" = none
    record_percent: float = 100.0  # share of the replayed sessions recorded
    record_file_bytes: int = 64 << 20  # a recording file is rotated past this size
    record_max_bytes: int = 1 << 30  # the recording directory at most (oldest files go)


@dataclass(frozen=True)
class Online(_Daemon):
    """``[online]``: nfreplay-online, the capturing and replaying side."""

    service_ip: str | None = None  # None: any local address
    service_port: int | None = None  # required for role "online"
    target_ip: str | None = None  # required for role "online"
    target_port: int | None = None  # required for role "online"
    assistants: tuple[tuple[str, int], ...] = ()  # required for role "online"
    interface: str = "any"
    connections: int = 2
    mtu: int = 1500
    # How replayed packets leave (adapters.rawsock): on the link to the next hop, through the
    # kernel's IP output, or inside a tunnel to the target host (proto.tunnel).
    deliver: Literal["link", "ip", "tunnel"] = "link"
    tunnel: str = _TUNNEL.DEFAULT  # deliver = "tunnel": the encapsulation
    tunnel_port: int = _TUNNEL.DEFAULT_PORT  # its UDP port on the target (vxlan, fou)
    fake_mss: int = _SESSION.fake_mss
    session_timeout: float = _SESSION.session_timeout
    response_timeout: float = _SESSION.response_timeout
    reconnect_interval: float = 2.0
    snaplen: int = 65535
    # Where client packets come from: "capture" (libpcap on `interface`) or "vxlan" (a traffic
    # mirror's VXLAN datagrams on UDP mirror_ip:mirror_port, adapters.mirror).
    input: Literal["capture", "vxlan"] = "capture"
    mirror_ip: str = "0.0.0.0"
    mirror_port: int = 4789
    vxlan_vni: int | None = None  # the only VXLAN network replayed; None: any
    keepalive_timeout: float = _SESSION.keepalive_timeout
    no_wait: bool = _SESSION.no_wait
    syn_only: bool = _SESSION.syn_only
    max_sessions: int = _SESSION.max_sessions
    max_buffered_bytes: int = _SESSION.max_buffered_bytes
    max_new_per_second: int = 0  # 0: no limit
    shed_lag: float = 500.0  # ms the capture may lag before new sessions are refused; 0: never
    workers: int = 1  # capture+replay processes; 0 = "auto", one per core
    # More service ports in one instance: (service ip or None, port, target ip, target port).
    more_services: tuple[tuple[str | None, int, str, int], ...] = ()
    client_pool: tuple[str, ...] = ()  # addresses the target sees instead of the clients'
    copies: int = 1
    percent: float = 100.0
    ramp: bool = False
    allow: tuple[str, ...] = ()
    deny: tuple[str, ...] = ()
    request_pattern: str = ""  # regex the first request must match ("" = any)
    pcap: str = ""  # offline: replay this capture file instead of a live interface
    speed: float = 1.0
    max_gap: float = 5000.0  # ms: longer pauses (or a corrupt timestamp) shortened; 0 = keep
    loops: int = 1


@dataclass(frozen=True)
class Assist(_Daemon):
    """``[assist]``: nfreplay-assist, the NFQUEUE side that swallows the target's replies."""

    target_ip: str | None = None  # required for role "assist"
    target_port: int | None = None  # required for role "assist"
    clients: tuple[str, ...] = ()  # required for role "assist"
    mode: Literal["assistant", "colocated"] = "assistant"
    listen_ip: str = "0.0.0.0"
    listen_port: int = CONTROL_PORT
    queue: int = 0
    passlist: tuple[str, ...] = ()
    fix_ip_forward: bool = False
    online: tuple[str, ...] = ()  # networks of the online hosts allowed on the control channel
    max_connections: int = _LIMITS.connections
    max_connections_per_peer: int = _LIMITS.connections_per_peer
    max_routes: int = _LIMITS.routes
    max_routes_per_connection: int = _LIMITS.routes_per_connection
    max_parked: int = _LIMITS.parked
    max_backlog_bytes: int = _LIMITS.backlog


@dataclass(frozen=True)
class Target:
    """``[target]``: the route on the target host that sends replies to the assistant, and the
    tunnel device that takes replayed packets in (``tunnel``)."""

    clients: tuple[str, ...] = ()  # required for role "target"
    via: str | None = None  # required for role "target" unless `tunnel` is set
    tunnel: str = ""  # "": no tunnel; else the encapsulation nfreplay-online sends with
    tunnel_peers: tuple[str, ...] = ()  # the online hosts allowed to send into the tunnel
    tunnel_port: int = _TUNNEL.DEFAULT_PORT
    resident: bool = False  # stay running: put the route back when the kernel drops it


@dataclass(frozen=True)
class Config:
    """The whole configuration; ``source`` is the file it was read from (None: defaults only)."""

    general: General = field(default_factory=General)
    online: Online = field(default_factory=Online)
    assist: Assist = field(default_factory=Assist)
    target: Target = field(default_factory=Target)
    source: str | None = None


_SECTIONS: dict[str, type[Any]] = {
    "general": General,
    "online": Online,
    "assist": Assist,
    "target": Target,
}


# --------------------------------------------------------------------------------------------
# Value parsers. Each takes (dotted key, raw value, from_cli) and returns the parsed value or
# raises ConfigError naming the key. ``from_cli`` allows the string forms a command line
# produces ("2", "true", "a,b") where the TOML file must use the native type.

Parser = Callable[[str, object, bool], Any]


def _show(value: object) -> str:
    """Render a raw value for an error message, TOML-style."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, (list, tuple)):
        return "a list"
    if isinstance(value, Mapping):
        return "a table"
    if isinstance(value, int) and value.bit_length() > 64:
        return "a number too large"  # (str() refuses past 4300 digits)
    return str(value)


def _finite(number: int | float) -> float | None:
    """The number as a float; None if it is not finite or too large for one."""
    try:
        result = float(number)
    except OverflowError:
        return None
    return result if math.isfinite(result) else None


def _name(name: str) -> str:
    """A section or key name from the file for an error message, quoted if it is odd."""
    return name if re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", name) else json.dumps(name)[:80]


def _fail(key: str, message: str) -> ConfigError:
    return ConfigError(f"{key}: {message}")


def _string(key: str, value: object) -> str:
    if not isinstance(value, str):
        raise _fail(key, f"must be a string, got {_show(value)}")
    return value


def _int_value(key: str, value: object, cli: bool) -> int:
    if cli and isinstance(value, str):
        text = value.strip()
        if re.fullmatch(r"[+-]?[0-9]{1,30}", text):
            return int(text, 10)
        raise _fail(key, f"must be an integer, got {_show(value)}")
    if isinstance(value, bool) or not isinstance(value, int):
        raise _fail(key, f"must be an integer, got {_show(value)}")
    return value


def _integer(lo: int, hi: int) -> Parser:
    def parse(key: str, value: object, cli: bool) -> int:
        number = _int_value(key, value, cli)
        if not lo <= number <= hi:
            raise _fail(key, f"must be {lo}-{hi}, got {number}")
        return number

    return parse


def _workers(key: str, value: object, cli: bool) -> int:
    """1-64 processes, or "auto" (0: one per core, decided at start)."""
    if value == "auto":
        return 0
    if isinstance(value, str) and not cli:
        raise _fail(key, f"must be 1-64 or \"auto\", got {_show(value)}")
    try:
        return _integer(1, 64)(key, value, cli)
    except ConfigError:
        raise _fail(key, f"must be 1-64 or \"auto\", got {_show(value)}") from None


def _fraction(lo: float, hi: float, what: str) -> Parser:
    """A number in [lo, hi] (ints accepted), e.g. a percentage or a speed factor."""

    def parse(key: str, value: object, cli: bool) -> float:
        number: object = value
        if cli and isinstance(value, str):
            try:
                number = float(value.strip())
            except ValueError:
                raise _fail(key, f"must be {what}, got {_show(value)}") from None
        if isinstance(number, bool) or not isinstance(number, (int, float)):
            raise _fail(key, f"must be {what}, got {_show(value)}")
        result = _finite(number)
        if result is None or not lo <= result <= hi:
            raise _fail(key, f"must be {what} ({lo:g}-{hi:g}), got {_show(value)}")
        return result

    return parse


def _text(key: str, value: object, cli: bool) -> str:
    return _string(key, value)


def _seconds(key: str, value: object, cli: bool) -> float:
    number: object = value
    if cli and isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            raise _fail(key, f"must be a number of seconds, got {_show(value)}") from None
    if isinstance(number, bool) or not isinstance(number, (int, float)):
        raise _fail(key, f"must be a number of seconds, got {_show(value)}")
    seconds = _finite(number)
    # TOML has inf and nan; neither is a usable timeout.
    if seconds is None or seconds <= 0:
        raise _fail(key, f"must be a finite number of seconds > 0, got {_show(value)}")
    return seconds


_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}


def _boolean(key: str, value: object, cli: bool) -> bool:
    if cli and isinstance(value, str):
        word = value.strip().lower()
        if word in _TRUE:
            return True
        if word in _FALSE:
            return False
    if isinstance(value, bool):
        return value
    raise _fail(key, f"must be true or false, got {_show(value)}")


def _choice(*choices: str) -> Parser:
    quoted = [json.dumps(c) for c in choices]
    if len(quoted) == 2:
        allowed = f"{quoted[0]} or {quoted[1]}"
    else:
        allowed = "one of " + ", ".join(quoted)

    def parse(key: str, value: object, cli: bool) -> str:
        if not isinstance(value, str) or value not in choices:
            raise _fail(key, f"must be {allowed}, got {_show(value)}")
        return value

    return parse


def _instance(key: str, value: object, cli: bool) -> str:
    text = _string(key, value)
    if not INSTANCE_RE.fullmatch(text):
        raise _fail(key, f"must be 1-32 of A-Z a-z 0-9 _ . -, got {_show(value)}")
    return text


def _abs_path(key: str, value: object, cli: bool) -> str:
    text = _string(key, value)
    # A relative state directory would depend on the daemon's working directory, and `status`
    # run from elsewhere would not find the files.
    if not text.startswith("/"):
        raise _fail(key, f"must be an absolute path, got {_show(value)}")
    return os.path.normpath(text)


def _interface(key: str, value: object, cli: bool) -> str:
    text = _string(key, value)
    # Linux interface names: IFNAMSIZ-1 = 15 bytes, no '/', no whitespace, not "." or "..".
    if (
        not 1 <= len(text.encode(errors="replace")) <= 15
        or not text.isprintable()
        or text in (".", "..")
        or "/" in text
        or any(c.isspace() for c in text)
    ):
        raise _fail(key, f"is not a valid interface name, got {_show(value)}")
    return text


def _ip(key: str, value: object, cli: bool = False) -> str:
    text = _string(key, value)
    try:
        return str(ipaddress.IPv4Address(text.strip()))
    except ValueError:
        raise _fail(key, f"{_show(value)} is not an IPv4 address") from None


def _port(key: str, text: str) -> int:
    if not re.fullmatch(r"[0-9]{1,10}", text):
        raise _fail(key, f"must be 1-65535, got {_show(text)}")
    number = int(text, 10)
    if not 1 <= number <= 65535:
        raise _fail(key, f"must be 1-65535, got {number}")
    return number


def _endpoint(*, ip: Literal["required", "optional"], port: int | None = None,
              default_ip: str | None = None) -> Parser:
    """Parse "ip:port", "[ip:]port" or "ip[:port]" into an (ip, port) pair.

    ``ip="optional"``: the value may be a bare port (or a TOML integer), giving ``default_ip``.
    ``port`` set: the value may be a bare IP, giving that port.
    Errors in a part name the part: ``online.target.port: must be 1-65535, got 70000``.
    """
    if ip == "optional":
        form = '"[ip:]port"'
    elif port is not None:
        form = '"ip[:port]"'
    else:
        form = '"ip:port"'

    def parse(key: str, value: object, cli: bool) -> tuple[str | None, int]:
        if ip == "optional" and isinstance(value, int) and not isinstance(value, bool):
            if not 1 <= value <= 65535:
                raise _fail(f"{key}.port", f"must be 1-65535, got {value}")
            return default_ip, value
        if not isinstance(value, str):
            raise _fail(key, f"must be a string {form}, got {_show(value)}")
        text = value.strip()
        host, sep, port_text = text.rpartition(":")
        if not sep:
            if ip == "optional":
                return default_ip, _port(f"{key}.port", text)
            if port is not None:
                return _ip(f"{key}.ip", text), port
            raise _fail(key, f"must be {form}, got {_show(value)}")
        if not host:
            raise _fail(key, f"must be {form}, got {_show(value)}")
        return _ip(f"{key}.ip", host), _port(f"{key}.port", port_text)

    return parse


_ENDPOINT_LOOPBACK = _endpoint(ip="optional", default_ip="127.0.0.1")


def _METRICS(key: str, value: object, cli: bool) -> tuple[str | None, int | None]:
    """`metrics_listen`: "[ip:]port" (a bare port: loopback), or "" for no endpoint."""
    if isinstance(value, str) and not value.strip():
        return "127.0.0.1", None
    return _ENDPOINT_LOOPBACK(key, value, cli)


_MIRROR_ENDPOINT = _endpoint(ip="optional", default_ip="0.0.0.0")


def _input(key: str, value: object, cli: bool) -> tuple[str, str, int]:
    """`online.input`: "capture", or "vxlan[:[ADDR:]PORT]" (the mirror's UDP socket; all
    addresses, port 4789 by default)."""
    text = value.strip() if isinstance(value, str) else value
    if text == "capture":
        return "capture", "0.0.0.0", 4789
    if text == "vxlan":
        return "vxlan", "0.0.0.0", 4789
    if isinstance(text, str) and text.startswith("vxlan:"):
        ip, port = _MIRROR_ENDPOINT(key, text[len("vxlan:"):], cli)
        assert ip is not None
        return "vxlan", ip, port
    raise _fail(key, f'must be "capture" or "vxlan[:[ADDR:]PORT]", got {_show(value)}')


def _vni(key: str, value: object, cli: bool) -> int | None:
    """`online.vxlan_vni`: a VXLAN network id 0-16777215, or "" for any."""
    if isinstance(value, str) and not value.strip():
        return None
    try:
        return _integer(0, (1 << 24) - 1)(key, value, cli)
    except ConfigError:
        raise _fail(key, f'must be a VNI 0-16777215 or "" (any), got {_show(value)}') from None


def _mapping(key: str, value: object, cli: bool) -> tuple[str | None, int, str, int]:
    """tcpcopy's -x form "[ip:]port-ip:port": a service and the target it is replayed to."""
    if not isinstance(value, str) or value.count("-") != 1:
        raise _fail(key, f'must be "[ip:]port-ip:port", got {_show(value)}')
    service, target = value.split("-")
    sip, sport = _endpoint(ip="optional")(f"{key}.service", service, cli)
    tip, tport = _endpoint(ip="required")(f"{key}.target", target, cli)
    assert tip is not None
    return sip, sport, tip, tport


def _network(key: str, value: object, cli: bool) -> str:
    text = _string(key, value).strip()
    try:
        return str(ipaddress.IPv4Network(text, strict=True))
    except ipaddress.NetmaskValueError:
        raise _fail(key, f"{_show(value)} has a bad prefix length or netmask") from None
    except ValueError as exc:
        if "host bits set" in str(exc):
            raise _fail(key, f"{_show(value)} has host bits set") from None
        raise _fail(key, f"{_show(value)} is not an IPv4 network") from None


def _list(item: Parser, *, min_len: int = 0, max_len: int | None = None) -> Parser:
    """A list of ``item`` values; errors in an item name it as ``key[i]``; duplicates are errors.

    From the command line a single string is split on commas ("a,b" == ["a", "b"]).
    """

    def parse(key: str, value: object, cli: bool) -> tuple[Any, ...]:
        if cli and isinstance(value, str):
            value = [part.strip() for part in value.split(",") if part.strip()]
        if not isinstance(value, (list, tuple)):
            raise _fail(key, f"must be a list, got {_show(value)}")
        if len(value) < min_len:
            raise _fail(key, f"must have at least {min_len} entr{'y' if min_len == 1 else 'ies'}")
        if max_len is not None and len(value) > max_len:
            raise _fail(key, f"must have at most {max_len} entries, got {len(value)}")
        seen: dict[Any, int] = {}
        out = []
        for i, raw in enumerate(value):
            parsed = item(f"{key}[{i}]", raw, cli)
            if parsed in seen:
                raise _fail(f"{key}[{i}]", f"{_show(raw)} duplicates {key}[{seen[parsed]}]")
            seen[parsed] = i
            out.append(parsed)
        return tuple(out)

    return parse


# --------------------------------------------------------------------------------------------
# The schema: section -> key -> how to parse it and which dataclass field(s) it fills.


@dataclass(frozen=True)
class _Key:
    parse: Parser
    fields: tuple[str, ...]  # dataclass fields filled; with two, parse returns a pair
    required: bool = False


def _k(parse: Parser, *fields: str, required: bool = False) -> _Key:
    return _Key(parse, fields, required)


# The keys both daemons ([online], [assist]) have: their `_Daemon` fields.
_DAEMON_KEYS = {
    "stats_interval": _k(_fraction(0.0, 86_400.0, "seconds"), "stats_interval"),
    "metrics_listen": _k(_METRICS, "metrics_ip", "metrics_port"),
    "record_responses": _k(_text, "record_responses"),
    "record_percent": _k(_fraction(0.01, 100.0, "a percentage"), "record_percent"),
    "record_file_bytes": _k(_integer(1 << 20, 1 << 40), "record_file_bytes"),
    "record_max_bytes": _k(_integer(2 << 20, 1 << 50), "record_max_bytes"),
}

_SCHEMA: dict[str, dict[str, _Key]] = {
    "general": {
        "instance": _k(_instance, "instance"),
        "state_dir": _k(_abs_path, "state_dir"),
        "backend": _k(_choice("auto", "nft", "legacy"), "backend"),
        "log_level": _k(_choice("debug", "info", "warning", "error"), "log_level"),
    },
    "online": {
        "service": _k(_endpoint(ip="optional"), "service_ip", "service_port", required=True),
        "target": _k(_endpoint(ip="required"), "target_ip", "target_port", required=True),
        "assistants": _k(
            _list(_endpoint(ip="required", port=CONTROL_PORT), min_len=1, max_len=32),
            "assistants",
            required=True,
        ),
        "interface": _k(_interface, "interface"),
        "connections": _k(_integer(1, 11), "connections"),
        "mtu": _k(_integer(576, 65535), "mtu"),
        "deliver": _k(_choice("link", "ip", "tunnel"), "deliver"),
        "inject": _k(_choice("link", "ip"), "deliver"),  # deliver's first spelling (ALIASES)
        "tunnel": _k(_choice(*_TUNNEL.ENCAPSULATIONS), "tunnel"),
        "tunnel_port": _k(_integer(1, 65535), "tunnel_port"),
        "fake_mss": _k(_integer(536, 65495), "fake_mss"),
        "session_timeout": _k(_seconds, "session_timeout"),
        "response_timeout": _k(_seconds, "response_timeout"),
        "reconnect_interval": _k(_seconds, "reconnect_interval"),
        # libpcap's MAXIMUM_SNAPLEN is 262144; below 68 not even the IP+TCP headers fit.
        "snaplen": _k(_integer(68, 262144), "snaplen"),
        "input": _k(_input, "input", "mirror_ip", "mirror_port"),
        "vxlan_vni": _k(_vni, "vxlan_vni"),
        "keepalive_timeout": _k(_seconds, "keepalive_timeout"),
        "no_wait": _k(_boolean, "no_wait"),
        "syn_only": _k(_boolean, "syn_only"),
        "max_sessions": _k(_integer(1, 10_000_000), "max_sessions"),
        "max_buffered_bytes": _k(_integer(1 << 20, 1 << 40), "max_buffered_bytes"),
        "max_new_per_second": _k(_integer(0, 10_000_000), "max_new_per_second"),
        "shed_lag": _k(_fraction(0.0, 60_000.0, "milliseconds"), "shed_lag"),
        **_DAEMON_KEYS,
        "workers": _k(_workers, "workers"),
        "more_services": _k(_list(_mapping), "more_services"),
        "client_pool": _k(_list(_text), "client_pool"),
        "copies": _k(_integer(1, 1000), "copies"),
        "percent": _k(_fraction(0.01, 100.0, "a percentage"), "percent"),
        "ramp": _k(_boolean, "ramp"),
        "allow": _k(_list(_network), "allow"),
        "deny": _k(_list(_network), "deny"),
        "request_pattern": _k(_text, "request_pattern"),
        "pcap": _k(_text, "pcap"),
        "speed": _k(_fraction(0.01, 1000.0, "a speed factor"), "speed"),
        "max_gap": _k(_fraction(0.0, 86_400_000.0, "milliseconds"), "max_gap"),
        "loops": _k(_integer(1, 1_000_000), "loops"),
    },
    "assist": {
        "target": _k(_endpoint(ip="required"), "target_ip", "target_port", required=True),
        "clients": _k(_list(_network, min_len=1), "clients", required=True),
        "mode": _k(_choice("assistant", "colocated"), "mode"),
        "listen": _k(_endpoint(ip="optional", default_ip="0.0.0.0"), "listen_ip", "listen_port"),
        "queue": _k(_integer(0, 65535), "queue"),
        "passlist": _k(_list(_ip), "passlist"),
        "fix_ip_forward": _k(_boolean, "fix_ip_forward"),
        "online": _k(_list(_network), "online"),
        "max_connections": _k(_integer(1, 65535), "max_connections"),
        "max_connections_per_peer": _k(_integer(1, 65535), "max_connections_per_peer"),
        "max_routes": _k(_integer(1, 100_000_000), "max_routes"),
        "max_routes_per_connection": _k(_integer(1, 100_000_000), "max_routes_per_connection"),
        "max_parked": _k(_integer(1, 100_000_000), "max_parked"),
        "max_backlog_bytes": _k(_integer(1 << 16, 1 << 30), "max_backlog_bytes"),
        **_DAEMON_KEYS,
    },
    "target": {
        "clients": _k(_list(_network, min_len=1), "clients", required=True),
        "via": _k(_ip, "via"),
        "resident": _k(_boolean, "resident"),
        "tunnel": _k(_choice("", *_TUNNEL.ENCAPSULATIONS), "tunnel"),
        "tunnel_peers": _k(_list(_ip, max_len=64), "tunnel_peers"),
        "tunnel_port": _k(_integer(1, 65535), "tunnel_port"),
    },
}


ALIASES: Mapping[str, str] = {"online.inject": "online.deliver"}
"""Keys that are another spelling of a key (they fill its field); setting both in one place
is an error."""


def _check_schema() -> None:
    """Import-time invariant: schema and dataclasses describe the same fields."""
    for section, cls in _SECTIONS.items():
        names = [f.name for f in dataclasses.fields(cls)]
        filled = [name for key, spec in _SCHEMA[section].items()
                  if f"{section}.{key}" not in ALIASES for name in spec.fields]
        assert sorted(filled) == sorted(names), (section, filled, names)
    for alias, key in ALIASES.items():
        (a_section, a_key), (section, key) = alias.split("."), key.split(".")
        assert _SCHEMA[a_section][a_key].fields == _SCHEMA[section][key].fields, alias


_check_schema()


def keys() -> list[str]:
    """Every valid dotted key ("online.target", ...), in schema order (for CLIs and docs)."""
    return [f"{s}.{k}" for s, table in _SCHEMA.items() for k in table
            if f"{s}.{k}" not in ALIASES]


# --------------------------------------------------------------------------------------------
# Loading.


def _read_file(path: str) -> dict[str, Any]:
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except OSError as exc:
        raise ConfigError(f"{path}: {exc.strerror or exc}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise ConfigError(f"{path}:{line}: not valid UTF-8") from None
    try:
        return tomllib.loads(text)
    except RecursionError:
        raise ConfigError(f"{path}: arrays or tables nested too deep") from None
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)
        where = re.search(r"\s*\(at line (\d+), column (\d+)\)$", message)
        if where:
            message = message[: where.start()]
            raise ConfigError(f"{path}:{where[1]}:{where[2]}: {message}") from None
        if message.endswith("(at end of document)"):
            message = message[: -len("(at end of document)")].rstrip()
            line = text.count("\n") + (0 if text.endswith("\n") else 1)
            raise ConfigError(f"{path}:{max(line, 1)}: {message} (at end of file)") from None
        raise ConfigError(f"{path}: {message}") from None
    except ValueError:  # tomllib converts integers with int(): more than 4300 digits
        raise ConfigError(f"{path}: a number too large") from None


def _apply(
    values: dict[str, dict[str, Any]], section: str, key: str, raw: object, cli: bool
) -> None:
    spec = _SCHEMA[section][key]
    parsed = spec.parse(f"{section}.{key}", raw, cli)
    if len(spec.fields) == 1:
        values[section][spec.fields[0]] = parsed
    else:
        for name, part in zip(spec.fields, parsed, strict=True):
            values[section][name] = part


def _check_aliases(given: Mapping[str, set[str]]) -> None:
    for alias, key in ALIASES.items():
        (a_section, a_key), (section, name) = alias.split("."), key.split(".")
        if a_key in given[a_section] and name in given[section]:
            raise _fail(alias, f"and {key} are one setting: keep {key}")


def load(
    path: str | None,
    overrides: Mapping[str, object] = {},
    *,
    role: str,
) -> Config:
    """Read the configuration for ``role`` ("online", "assist", "target" or "status").

    ``path`` None reads ``DEFAULT_PATH`` if it exists, else starts from the built-in defaults;
    an explicit path that does not exist is an error. ``overrides`` maps dotted keys
    ("online.target") to command-line values (strings, lists of strings, or native types; a
    None value is ignored so unset flags can be passed straight through); they are validated
    like file values and win over the file. Then the required keys of ``role``'s own section
    are checked ("status" requires none).

    Raises ConfigError with a one-line message naming the key (or the file).
    """
    if role not in ROLES:
        raise ValueError(f"role must be one of {ROLES}, got {role!r}")

    source: str | None
    if path is None:
        source = DEFAULT_PATH if os.path.exists(DEFAULT_PATH) else None
    else:
        source = path
    document = _read_file(source) if source is not None else {}

    values: dict[str, dict[str, Any]] = {s: {} for s in _SCHEMA}
    given: dict[str, set[str]] = {s: set() for s in _SCHEMA}

    for section, table in document.items():
        if section not in _SCHEMA:
            raise _fail(_name(section), "unknown section")
        if not isinstance(table, dict):
            raise _fail(section, f"must be a table [{section}], got {_show(table)}")
        for key, raw in table.items():
            if key not in _SCHEMA[section]:
                raise _fail(f"{section}.{_name(key)}", "unknown key")
            _apply(values, section, key, raw, cli=False)
            given[section].add(key)
    _check_aliases(given)

    for dotted, raw in overrides.items():
        if raw is None:
            continue
        section, _, key = dotted.partition(".")
        if section not in _SCHEMA:
            raise _fail(dotted, "unknown section" if not key else "unknown key")
        if key not in _SCHEMA[section]:
            raise _fail(dotted, "unknown key")
        _apply(values, section, key, raw, cli=True)
        given[section].add(key)
    _check_aliases({s: {k for k in given[s] if f"{s}.{k}" in overrides
                        and overrides[f"{s}.{k}"] is not None} for s in given})

    if role in _SECTIONS:
        for key, spec in _SCHEMA[role].items():
            if spec.required and key not in given[role]:
                where = source if source is not None else DEFAULT_PATH
                hint = FLAG_HINTS.get(f"{role}.{key}")
                how = f"set it in {where}" + (f" or pass {hint}" if hint else "")
                raise _fail(f"{role}.{key}", f"required ({how})")
    online = values["online"]
    if role == "online" and online.get("deliver") == "tunnel":
        encap = _TUNNEL.encapsulation(online.get("tunnel", Online.tunnel))
        mtu = online.get("mtu", Online.mtu)
        if _TUNNEL.max_mss(mtu, encap) < 536:
            raise _fail("online.mtu", f"{mtu} leaves no room for a {encap.name} tunnel's "
                                      f"{encap.overhead} bytes and a 536-byte segment")
    if role == "target" and "via" not in given["target"] and not values["target"].get("tunnel"):
        where = source if source is not None else DEFAULT_PATH
        raise _fail("target.via", f"required (set it in {where} or pass --via), unless "
                                  "target.tunnel is set (--tunnel)")

    sections = {name: cls(**values[name]) for name, cls in _SECTIONS.items()}
    return Config(**sections, source=source)
