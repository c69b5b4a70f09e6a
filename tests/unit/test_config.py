"""nfreplay.config: TOML + overrides into frozen dataclasses, errors that name the key."""

from __future__ import annotations

import dataclasses
import ipaddress
import pathlib
import re
import tomllib

import pytest

from nfreplay import config
from nfreplay.config import Assist, Config, General, Online, Target, load
from nfreplay.errors import ConfigError

ETC = pathlib.Path(__file__).resolve().parents[2] / "etc" / "nfreplay.toml"

FULL = """
[general]
instance = "lab-1.a_b"
state_dir = "/var/run/nfreplay/"
backend = "legacy"
log_level = "debug"

[online]
service = "198.18.0.2:8080"
target = "198.18.0.3:80"
assistants = ["198.18.0.4", "198.18.0.5:4000"]
interface = "eth1"
connections = 11
mtu = 9000
fake_mss = 8960
session_timeout = 30
response_timeout = 0.5
reconnect_interval = 10.0
snaplen = 262144

[assist]
target = "198.18.0.3:6379"
clients = ["198.18.1.0/24", "198.18.2.7"]
mode = "colocated"
listen = "198.18.0.4:4000"
queue = 65535
passlist = ["198.18.1.10", "198.18.1.11"]
fix_ip_forward = true

[target]
clients = ["198.18.1.0/24", "198.18.3.0/25"]
via = "198.18.0.4"
"""


@pytest.fixture(autouse=True)
def no_default_file(monkeypatch: pytest.MonkeyPatch, tmp_path: pathlib.Path) -> None:
    """Never let a real /etc/nfreplay/nfreplay.toml on the test host leak into a test."""
    monkeypatch.setattr(config, "DEFAULT_PATH", str(tmp_path / "absent" / "nfreplay.toml"))


def write(tmp_path: pathlib.Path, text: str, name: str = "nfreplay.toml") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def error_of(tmp_path: pathlib.Path, text: str, role: str = "status", **kw: object) -> str:
    with pytest.raises(ConfigError) as info:
        load(write(tmp_path, text), role=role, **kw)  # type: ignore[arg-type]
    message = str(info.value)
    assert "\n" not in message
    assert info.value.exit_code == 2
    return message


# ------------------------------------------------------------------------------ happy paths


def test_defaults_without_any_file() -> None:
    cfg = load(None, role="status")
    assert cfg == Config()
    assert cfg.source is None
    assert cfg.general == General("default", "/run/nfreplay", "auto", "info")
    assert cfg.online.interface == "any"
    assert cfg.online.connections == 2
    assert cfg.online.mtu == 1500
    assert cfg.online.fake_mss == 1460
    assert cfg.online.session_timeout == 120.0
    assert cfg.online.response_timeout == 3.0
    assert cfg.online.reconnect_interval == 2.0
    assert cfg.online.snaplen == 65535
    assert cfg.online.assistants == ()
    assert cfg.assist.mode == "assistant"
    assert (cfg.assist.listen_ip, cfg.assist.listen_port) == ("0.0.0.0", 36524)
    assert cfg.assist.queue == 0
    assert cfg.assist.passlist == ()
    assert cfg.assist.fix_ip_forward is False
    assert cfg.target == Target((), None)


def test_every_key_parsed(tmp_path: pathlib.Path) -> None:
    path = write(tmp_path, FULL)
    cfg = load(path, role="status")
    assert cfg.source == path
    assert cfg.general == General(
        instance="lab-1.a_b", state_dir="/var/run/nfreplay", backend="legacy", log_level="debug"
    )
    assert cfg.online == Online(
        service_ip="198.18.0.2",
        service_port=8080,
        target_ip="198.18.0.3",
        target_port=80,
        assistants=(("198.18.0.4", 36524), ("198.18.0.5", 4000)),
        interface="eth1",
        connections=11,
        mtu=9000,
        fake_mss=8960,
        session_timeout=30.0,
        response_timeout=0.5,
        reconnect_interval=10.0,
        snaplen=262144,
    )
    assert isinstance(cfg.online.session_timeout, float)
    assert cfg.assist == Assist(
        target_ip="198.18.0.3",
        target_port=6379,
        clients=("198.18.1.0/24", "198.18.2.7/32"),
        mode="colocated",
        listen_ip="198.18.0.4",
        listen_port=4000,
        queue=65535,
        passlist=("198.18.1.10", "198.18.1.11"),
        fix_ip_forward=True,
    )
    assert cfg.target == Target(clients=("198.18.1.0/24", "198.18.3.0/25"), via="198.18.0.4")
    # the same file satisfies every role
    for role in config.ROLES:
        assert load(path, role=role) == cfg


def test_result_is_frozen(tmp_path: pathlib.Path) -> None:
    cfg = load(write(tmp_path, FULL), role="online")
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.online.mtu = 1  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.general = General()  # type: ignore[misc]


@pytest.mark.parametrize(
    ("text", "ip", "port"),
    [
        ('"80"', None, 80),
        ("80", None, 80),
        ('" 443 "', None, 443),
        ('"198.18.0.2:80"', "198.18.0.2", 80),
        ('"0.0.0.0:65535"', "0.0.0.0", 65535),
    ],
)
def test_service_forms(tmp_path: pathlib.Path, text: str, ip: str | None, port: int) -> None:
    cfg = load(write(tmp_path, f"[online]\nservice = {text}\n"), role="status")
    assert (cfg.online.service_ip, cfg.online.service_port) == (ip, port)


@pytest.mark.parametrize(
    ("text", "want"),
    [('"capture"', ("capture", "0.0.0.0", 4789)), ('"vxlan"', ("vxlan", "0.0.0.0", 4789)),
     ('"vxlan:4790"', ("vxlan", "0.0.0.0", 4790)),
     ('" vxlan:198.18.0.5:4789 "', ("vxlan", "198.18.0.5", 4789))],
)
def test_input_forms(tmp_path: pathlib.Path, text: str, want: tuple[str, str, int]) -> None:
    """The config file takes the spellings of --input."""
    cfg = load(write(tmp_path, f"[online]\ninput = {text}\nvxlan_vni = 0\n"), role="status")
    assert (cfg.online.input, cfg.online.mirror_ip, cfg.online.mirror_port) == want
    assert cfg.online.vxlan_vni == 0
    flags = load(None, {"online.input": text.strip('"'), "online.vxlan_vni": "7"}, role="status")
    assert (flags.online.input, flags.online.mirror_ip, flags.online.mirror_port) == want
    assert flags.online.vxlan_vni == 7
    assert load(write(tmp_path, '[online]\nvxlan_vni = ""\n'), role="status").online.vxlan_vni is None


@pytest.mark.parametrize(
    ("text", "ip", "port"),
    [('"36524"', "0.0.0.0", 36524), ("4000", "0.0.0.0", 4000), ('"127.0.0.1:1"', "127.0.0.1", 1)],
)
def test_listen_forms(tmp_path: pathlib.Path, text: str, ip: str, port: int) -> None:
    cfg = load(write(tmp_path, f"[assist]\nlisten = {text}\n"), role="status")
    assert (cfg.assist.listen_ip, cfg.assist.listen_port) == (ip, port)


def test_addresses_are_normalised(tmp_path: pathlib.Path) -> None:
    text = """
[online]
target = " 198.18.0.3:0080 "
[assist]
clients = ["198.18.1.0/255.255.255.0", "198.18.2.1/32"]
passlist = [" 198.18.1.9"]
[target]
clients = ["198.18.1.0/24"]
via = "198.18.0.4 "
"""
    cfg = load(write(tmp_path, text), role="status")
    assert (cfg.online.target_ip, cfg.online.target_port) == ("198.18.0.3", 80)
    assert cfg.assist.clients == ("198.18.1.0/24", "198.18.2.1/32")
    assert cfg.assist.passlist == ("198.18.1.9",)
    assert cfg.target.via == "198.18.0.4"


def test_thirty_two_assistants_allowed(tmp_path: pathlib.Path) -> None:
    hosts = ", ".join(f'"198.18.0.{i}"' for i in range(1, 33))
    cfg = load(write(tmp_path, f"[online]\nassistants = [{hosts}]\n"), role="status")
    assert len(cfg.online.assistants) == 32


# ------------------------------------------------------------------------------ bad values

BAD = [
    # (section, key, TOML value, message prefix)
    ("general", "instance", '"a/b"', "general.instance: must be 1-32 of"),
    ("general", "instance", '"' + "x" * 33 + '"', "general.instance: must be 1-32 of"),
    ("general", "instance", '""', "general.instance: must be 1-32 of"),
    ("general", "instance", "7", "general.instance: must be a string, got 7"),
    ("general", "state_dir", '"run/nfreplay"', 'general.state_dir: must be an absolute path, got "run/nfreplay"'),
    ("general", "backend", '"iptables"', 'general.backend: must be one of "auto", "nft", "legacy", got "iptables"'),
    ("general", "log_level", '"INFO"', 'general.log_level: must be one of "debug", "info", "warning", "error", got "INFO"'),
    ("online", "service", '"70000"', "online.service.port: must be 1-65535, got 70000"),
    ("online", "service", "0", "online.service.port: must be 1-65535, got 0"),
    ("online", "service", '"http"', 'online.service.port: must be 1-65535, got "http"'),
    ("online", "service", '"1.2.3:80"', 'online.service.ip: "1.2.3" is not an IPv4 address'),
    ("online", "service", "[80]", "online.service: must be a string"),
    ("online", "target", '"198.18.0.3:70000"', "online.target.port: must be 1-65535, got 70000"),
    ("online", "target", '"198.18.0.3"', 'online.target: must be "ip:port", got "198.18.0.3"'),
    ("online", "target", '":80"', 'online.target: must be "ip:port", got ":80"'),
    ("online", "target", '"target.example:80"', 'online.target.ip: "target.example" is not an IPv4 address'),
    ("online", "target", "80", 'online.target: must be a string "ip:port", got 80'),
    ("online", "assistants", "[]", "online.assistants: must have at least 1 entry"),
    ("online", "assistants", '"198.18.0.4"', 'online.assistants: must be a list, got "198.18.0.4"'),
    ("online", "assistants", '["198.18.0.4:0"]', "online.assistants[0].port: must be 1-65535, got 0"),
    ("online", "assistants", '["198.18.0.4", "x"]', 'online.assistants[1].ip: "x" is not an IPv4 address'),
    (
        "online",
        "assistants",
        '["198.18.0.4", "198.18.0.4:36524"]',
        'online.assistants[1]: "198.18.0.4:36524" duplicates online.assistants[0]',
    ),
    ("online", "interface", '"eth0/1"', 'online.interface: is not a valid interface name, got "eth0/1"'),
    ("online", "interface", '"sixteen-chars-xx"', "online.interface: is not a valid interface name"),
    ("online", "interface", '""', "online.interface: is not a valid interface name"),
    ("online", "connections", "0", "online.connections: must be 1-11, got 0"),
    ("online", "connections", "12", "online.connections: must be 1-11, got 12"),
    ("online", "connections", '"2"', 'online.connections: must be an integer, got "2"'),
    ("online", "connections", "true", "online.connections: must be an integer, got true"),
    ("online", "connections", "2.0", "online.connections: must be an integer, got 2.0"),
    ("online", "mtu", "575", "online.mtu: must be 576-65535, got 575"),
    ("online", "mtu", "65536", "online.mtu: must be 576-65535, got 65536"),
    ("online", "inject", '"raw"', 'online.inject: must be "link" or "ip", got "raw"'),
    ("online", "deliver", '"gre"', 'online.deliver: must be one of "link", "ip", "tunnel", got "gre"'),
    ("online", "tunnel", '"l2tp"', 'online.tunnel: must be one of "vxlan", "fou", "gre", "ipip", got "l2tp"'),
    ("online", "tunnel_port", "0", "online.tunnel_port: must be 1-65535, got 0"),
    ("online", "fake_mss", "535", "online.fake_mss: must be 536-65495, got 535"),
    ("online", "fake_mss", "65496", "online.fake_mss: must be 536-65495, got 65496"),
    ("online", "session_timeout", "0", "online.session_timeout: must be a finite number of seconds > 0, got 0"),
    ("online", "session_timeout", "nan", "online.session_timeout: must be a finite number of seconds > 0"),
    ("online", "session_timeout", "inf", "online.session_timeout: must be a finite number of seconds > 0"),
    ("online", "session_timeout", '"120"', 'online.session_timeout: must be a number of seconds, got "120"'),
    ("online", "response_timeout", "-1.5", "online.response_timeout: must be a finite number of seconds > 0, got -1.5"),
    ("online", "reconnect_interval", "0.0", "online.reconnect_interval: must be a finite number of seconds > 0"),
    ("online", "reconnect_interval", "false", "online.reconnect_interval: must be a number of seconds, got false"),
    ("online", "snaplen", "67", "online.snaplen: must be 68-262144, got 67"),
    ("online", "snaplen", "262145", "online.snaplen: must be 68-262144, got 262145"),
    ("online", "input", '"pcap"', 'online.input: must be "capture" or "vxlan[:[ADDR:]PORT]", got "pcap"'),
    ("online", "input", "4789", 'online.input: must be "capture" or "vxlan[:[ADDR:]PORT]", got 4789'),
    ("online", "input", '"vxlan:0"', "online.input.port: must be 1-65535, got 0"),
    ("online", "input", '"vxlan:"', 'online.input.port: must be 1-65535, got ""'),
    ("online", "input", '"vxlan:198.18.0.300:4789"', 'online.input.ip: "198.18.0.300" is not an IPv4 address'),
    ("online", "vxlan_vni", "16777216", 'online.vxlan_vni: must be a VNI 0-16777215 or "" (any), got 16777216'),
    ("online", "vxlan_vni", "-1", 'online.vxlan_vni: must be a VNI 0-16777215 or "" (any), got -1'),
    ("online", "vxlan_vni", '"42"', 'online.vxlan_vni: must be a VNI 0-16777215 or "" (any), got "42"'),
    ("online", "keepalive_timeout", "-1", "online.keepalive_timeout: must be a finite number of seconds > 0"),
    ("online", "no_wait", '"yes"', "online.no_wait: must be true or false"),
    ("online", "syn_only", "1", "online.syn_only: must be true or false"),
    ("online", "max_sessions", "0", "online.max_sessions: must be 1-10000000, got 0"),
    ("online", "max_buffered_bytes", "1000", "online.max_buffered_bytes: must be 1048576-1099511627776, got 1000"),
    ("online", "more_services", '["8080"]', 'online.more_services[0]: must be "[ip:]port-ip:port"'),
    ("online", "max_new_per_second", "-1", "online.max_new_per_second: must be 0-10000000, got -1"),
    ("online", "shed_lag", "-5", "online.shed_lag: must be milliseconds (0-60000), got -5"),
    ("online", "stats_interval", "-1", "online.stats_interval: must be seconds (0-86400), got -1"),
    ("online", "record_responses", "5", "online.record_responses: must be a string, got 5"),
    ("online", "record_percent", "0",
     "online.record_percent: must be a percentage (0.01-100), got 0"),
    ("online", "record_file_bytes", "10",
     "online.record_file_bytes: must be 1048576-1099511627776, got 10"),
    ("online", "record_max_bytes", "\"x\"", "online.record_max_bytes: must be an integer, got \"x\""),
    ("assist", "record_responses", "[\"a\"]", "assist.record_responses: must be a string, got a list"),
    ("assist", "record_percent", "101",
     "assist.record_percent: must be a percentage (0.01-100), got 101"),
    ("assist", "record_file_bytes", "-1",
     "assist.record_file_bytes: must be 1048576-1099511627776, got -1"),
    ("assist", "record_max_bytes", "1",
     "assist.record_max_bytes: must be 2097152-1125899906842624, got 1"),
    ("assist", "stats_interval", "\"x\"", "assist.stats_interval: must be seconds, got \"x\""),
    ("online", "metrics_listen", "\"localhost:9187\"",
     "online.metrics_listen.ip: \"localhost\" is not an IPv4 address"),
    ("assist", "metrics_listen", "70000", "assist.metrics_listen.port: must be 1-65535, got 70000"),
    ("online", "workers", "0", 'online.workers: must be 1-64 or "auto", got 0'),
    ("online", "client_pool", '"198.18.4.1"', "online.client_pool: must be a list"),
    ("online", "copies", "0", "online.copies: must be 1-1000, got 0"),
    ("online", "percent", "0", "online.percent: must be a percentage (0.01-100), got 0"),
    ("online", "ramp", '"no"', "online.ramp: must be true or false"),
    ("online", "allow", '["198.18.1.1/24"]', "online.allow[0]:"),
    ("online", "deny", '["nope"]', "online.deny[0]:"),
    ("online", "pcap", "1", "online.pcap: must be a string"),
    ("online", "request_pattern", "1", "online.request_pattern: must be a string"),
    ("online", "speed", "0", "online.speed: must be a speed factor (0.01-1000), got 0"),
    ("online", "max_gap", "-5", "online.max_gap: must be milliseconds (0-8.64e+07), got -5"),
    ("online", "loops", "0", "online.loops: must be 1-1000000, got 0"),
    ("assist", "target", '"198.18.0.3:0"', "assist.target.port: must be 1-65535, got 0"),
    ("assist", "target", '"198.18.0.256:80"', 'assist.target.ip: "198.18.0.256" is not an IPv4 address'),
    ("assist", "clients", '["198.18.1.1/24"]', 'assist.clients[0]: "198.18.1.1/24" has host bits set'),
    ("assist", "clients", '["10.0.0.0/8", "10.0.0.1/8"]', 'assist.clients[1]: "10.0.0.1/8" has host bits set'),
    ("assist", "clients", '["198.18.1.0/33"]', 'assist.clients[0]: "198.18.1.0/33" has a bad prefix length'),
    ("assist", "clients", '["2001:db8::/32"]', 'assist.clients[0]: "2001:db8::/32" is not an IPv4 network'),
    ("assist", "clients", "[]", "assist.clients: must have at least 1 entry"),
    ("assist", "clients", '["198.18.1.0/24", "198.18.1.0/255.255.255.0"]', "assist.clients[1]: "),
    ("assist", "mode", '"x"', 'assist.mode: must be "assistant" or "colocated", got "x"'),
    ("assist", "listen", '"0.0.0.0:0"', "assist.listen.port: must be 1-65535, got 0"),
    ("assist", "listen", "70000", "assist.listen.port: must be 1-65535, got 70000"),
    ("assist", "listen", '"1.2.3.4.5:80"', 'assist.listen.ip: "1.2.3.4.5" is not an IPv4 address'),
    ("assist", "queue", "-1", "assist.queue: must be 0-65535, got -1"),
    ("assist", "queue", "65536", "assist.queue: must be 0-65535, got 65536"),
    ("assist", "passlist", '["198.18.1.300"]', 'assist.passlist[0]: "198.18.1.300" is not an IPv4 address'),
    ("assist", "passlist", '"198.18.1.3"', 'assist.passlist: must be a list, got "198.18.1.3"'),
    ("assist", "fix_ip_forward", '"yes"', 'assist.fix_ip_forward: must be true or false, got "yes"'),
    ("assist", "fix_ip_forward", "1", "assist.fix_ip_forward: must be true or false, got 1"),
    ("assist", "online", '["198.18.0.2/33"]', "assist.online[0]"),
    ("assist", "max_connections", "0", "assist.max_connections: must be 1-65535, got 0"),
    ("assist", "max_connections_per_peer", "0", "assist.max_connections_per_peer: must be 1-65535, got 0"),
    ("assist", "max_routes", "0", "assist.max_routes: must be 1-100000000, got 0"),
    ("assist", "max_routes_per_connection", "0", "assist.max_routes_per_connection: must be 1-100000000, got 0"),
    ("assist", "max_parked", "0", "assist.max_parked: must be 1-100000000, got 0"),
    ("assist", "max_backlog_bytes", "100", "assist.max_backlog_bytes: must be 65536-1073741824, got 100"),
    ("target", "clients", '["10.0.0.1/8"]', 'target.clients[0]: "10.0.0.1/8" has host bits set'),
    ("target", "clients", '"198.18.1.0/24"', 'target.clients: must be a list, got "198.18.1.0/24"'),
    ("target", "via", '"198.18.0"', 'target.via: "198.18.0" is not an IPv4 address'),
    ("target", "via", '["198.18.0.4"]', "target.via: must be a string, got a list"),
    ("target", "resident", '"yes"', 'target.resident: must be true or false, got "yes"'),
    ("target", "tunnel", "true", 'target.tunnel: must be one of "", "vxlan", "fou", "gre", "ipip", got true'),
    ("target", "tunnel_peers", '["198.18.0"]', 'target.tunnel_peers[0]: "198.18.0" is not an IPv4 address'),
    ("target", "tunnel_port", "65536", "target.tunnel_port: must be 1-65535, got 65536"),
]


@pytest.mark.parametrize(("section", "key", "value", "prefix"), BAD, ids=[f"{b[0]}.{b[1]}={b[2]}" for b in BAD])
def test_bad_value(tmp_path: pathlib.Path, section: str, key: str, value: str, prefix: str) -> None:
    message = error_of(tmp_path, f"[{section}]\n{key} = {value}\n")
    assert message.startswith(prefix), message


def test_every_key_has_a_bad_value_case() -> None:
    covered = {f"{s}.{k}" for s, k, _, _ in BAD}
    assert covered == set(config.keys()) | set(config.ALIASES)


# ------------------------------------------------------------------------------ structure


def test_unknown_key(tmp_path: pathlib.Path) -> None:
    assert error_of(tmp_path, '[general]\nbogus = 1\n') == "general.bogus: unknown key"
    assert error_of(tmp_path, "[online]\nsnaplem = 100\n") == "online.snaplem: unknown key"


def test_unknown_nested_table(tmp_path: pathlib.Path) -> None:
    assert error_of(tmp_path, "[online.extra]\nx = 1\n") == "online.extra: unknown key"


def test_unknown_section(tmp_path: pathlib.Path) -> None:
    assert error_of(tmp_path, "[intercept]\nport = 36524\n") == "intercept: unknown section"
    assert error_of(tmp_path, "stray = 1\n") == "stray: unknown section"


def test_section_must_be_a_table(tmp_path: pathlib.Path) -> None:
    assert error_of(tmp_path, "general = 1\n").startswith("general: must be a table")


def test_keys_lists_the_schema() -> None:
    assert config.keys()[:2] == ["general.instance", "general.state_dir"]
    assert "online.target" in config.keys()
    assert "assist.fix_ip_forward" in config.keys()
    assert len(config.keys()) == 4 + 42 + 20 + 6


# ------------------------------------------------------------------------------ overrides


def test_overrides_win_over_the_file(tmp_path: pathlib.Path) -> None:
    path = write(tmp_path, FULL)
    cfg = load(
        path,
        {
            "online.target": "198.18.0.9:8080",
            "assist.clients": ["198.18.5.0/24"],
            "general.instance": "other",
            "online.connections": 3,
        },
        role="online",
    )
    assert (cfg.online.target_ip, cfg.online.target_port) == ("198.18.0.9", 8080)
    assert cfg.assist.clients == ("198.18.5.0/24",)
    assert cfg.general.instance == "other"
    assert cfg.online.connections == 3
    # untouched keys still come from the file
    assert cfg.online.mtu == 9000
    assert cfg.general.backend == "legacy"


def test_override_strings_from_a_command_line() -> None:
    cfg = load(
        None,
        {
            "online.connections": "4",
            "online.session_timeout": "1.5",
            "online.assistants": "198.18.0.4, 198.18.0.5:4000",
            "assist.fix_ip_forward": "yes",
            "assist.queue": " 7 ",
            "assist.passlist": "",
        },
        role="status",
    )
    assert cfg.online.connections == 4
    assert cfg.online.session_timeout == 1.5
    assert cfg.online.assistants == (("198.18.0.4", 36524), ("198.18.0.5", 4000))
    assert cfg.assist.fix_ip_forward is True
    assert cfg.assist.queue == 7
    assert cfg.assist.passlist == ()
    assert load(None, {"assist.fix_ip_forward": "off"}, role="status").assist.fix_ip_forward is False


def test_none_overrides_are_ignored(tmp_path: pathlib.Path) -> None:
    path = write(tmp_path, FULL)
    cfg = load(path, {"online.target": None, "general.instance": None}, role="online")
    assert cfg.online.target_port == 80
    assert cfg.general.instance == "lab-1.a_b"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"online.target": "198.18.0.3:70000"}, "online.target.port: must be 1-65535, got 70000"),
        ({"online.connections": "two"}, 'online.connections: must be an integer, got "two"'),
        ({"online.connections": "99"}, "online.connections: must be 1-11, got 99"),
        ({"online.session_timeout": "-1"}, 'online.session_timeout: must be a finite number of seconds > 0, got "-1"'),
        ({"assist.fix_ip_forward": "maybe"}, 'assist.fix_ip_forward: must be true or false, got "maybe"'),
        ({"assist.clients": ["198.18.1.0/24", "10.0.0.1/8"]}, 'assist.clients[1]: "10.0.0.1/8" has host bits set'),
        ({"online.bogus": "1"}, "online.bogus: unknown key"),
        ({"bogus.key": "1"}, "bogus.key: unknown key"),
        ({"general.instance": "a b"}, 'general.instance: must be 1-32 of A-Z a-z 0-9 _ . -, got "a b"'),
    ],
)
def test_bad_overrides(overrides: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        load(None, overrides, role="status")
    assert str(info.value) == message


def test_override_beats_a_bad_file_value_only_if_the_file_is_valid(tmp_path: pathlib.Path) -> None:
    # File values are validated even when overridden: a broken file is reported.
    path = write(tmp_path, "[online]\nmtu = 1\n")
    with pytest.raises(ConfigError, match=r"^online\.mtu: must be 576-65535, got 1$"):
        load(path, {"online.mtu": 1500}, role="status")


# ------------------------------------------------------------------------------ required keys

ONLINE_OK = '[online]\nservice = "80"\ntarget = "198.18.0.3:80"\nassistants = ["198.18.0.4"]\n'
ASSIST_OK = '[assist]\ntarget = "198.18.0.3:80"\nclients = ["198.18.1.0/24"]\n'
TARGET_OK = '[target]\nclients = ["198.18.1.0/24"]\nvia = "198.18.0.4"\n'


def test_via_is_required_unless_the_target_takes_a_tunnel(tmp_path: pathlib.Path) -> None:
    text = '[target]\nclients = ["198.18.1.0/24"]\n'
    path = write(tmp_path, text)
    assert error_of(tmp_path, text, role="target") == (
        f"target.via: required (set it in {path} or pass --via), unless target.tunnel is set "
        "(--tunnel)")
    cfg = config.load(str(path), {"target.tunnel": "vxlan", "target.tunnel_peers": "198.18.0.2"},
                      role="target")
    assert (cfg.target.tunnel, cfg.target.tunnel_peers, cfg.target.via) == (
        "vxlan", ("198.18.0.2",), None)


def test_a_tunnel_needs_room_in_the_mtu(tmp_path: pathlib.Path) -> None:
    text = ONLINE_OK + 'deliver = "tunnel"\nmtu = 600\n'
    assert error_of(tmp_path, text, role="online") == (
        "online.mtu: 600 leaves no room for a vxlan tunnel's 50 bytes and a 536-byte segment")
    path = write(tmp_path, ONLINE_OK + 'deliver = "tunnel"\ntunnel = "ipip"\nmtu = 600\n')
    assert config.load(path, role="online").online.tunnel == "ipip"


def test_inject_is_deliver_spelled_the_old_way(tmp_path: pathlib.Path) -> None:
    path = write(tmp_path, ONLINE_OK + 'inject = "ip"\n')
    assert config.load(str(path), role="online").online.deliver == "ip"
    assert config.load(str(path), {"online.deliver": "tunnel"}, role="online").online.deliver \
        == "tunnel"
    assert error_of(tmp_path, ONLINE_OK + 'inject = "ip"\ndeliver = "link"\n', role="online") \
        == "online.inject: and online.deliver are one setting: keep online.deliver"


@pytest.mark.parametrize(
    ("role", "text", "key", "flag"),
    [
        ("online", "", "online.service", "--service"),
        ("online", '[online]\nservice = "80"\n', "online.target", "--target"),
        ("online", '[online]\nservice = "80"\ntarget = "198.18.0.3:80"\n', "online.assistants", "--assistant"),
        ("assist", ONLINE_OK + TARGET_OK, "assist.target", "--target"),
        ("assist", '[assist]\ntarget = "198.18.0.3:80"\n', "assist.clients", "--clients"),
        ("target", ONLINE_OK + ASSIST_OK, "target.clients", "--clients"),
    ],
)
def test_missing_required(tmp_path: pathlib.Path, role: str, text: str, key: str, flag: str) -> None:
    path = write(tmp_path, text)
    message = error_of(tmp_path, text, role=role)
    assert message == f"{key}: required (set it in {path} or pass {flag})"


def test_missing_required_without_a_file_names_the_default_path() -> None:
    with pytest.raises(ConfigError) as info:
        load(None, role="target")
    assert str(info.value) == f"target.clients: required (set it in {config.DEFAULT_PATH} or pass --clients)"


@pytest.mark.parametrize(
    ("role", "text"), [("online", ONLINE_OK), ("assist", ASSIST_OK), ("target", TARGET_OK), ("status", "")]
)
def test_each_role_needs_only_its_own_section(tmp_path: pathlib.Path, role: str, text: str) -> None:
    cfg = load(write(tmp_path, text), role=role)
    assert isinstance(cfg, Config)


def test_required_keys_can_come_from_overrides() -> None:
    cfg = load(
        None,
        {"online.service": "80", "online.target": "198.18.0.3:80", "online.assistants": ["198.18.0.4"]},
        role="online",
    )
    assert cfg.online.assistants == (("198.18.0.4", 36524),)


def test_unknown_role_is_a_programming_error() -> None:
    with pytest.raises(ValueError):
        load(None, role="intercept")


# ------------------------------------------------------------------------------ files


def test_default_path_absent_gives_defaults() -> None:
    assert not pathlib.Path(config.DEFAULT_PATH).exists()
    assert load(None, role="status") == Config()


def test_default_path_present_is_read(monkeypatch: pytest.MonkeyPatch, tmp_path: pathlib.Path) -> None:
    path = write(tmp_path, '[general]\ninstance = "from-default"\n')
    monkeypatch.setattr(config, "DEFAULT_PATH", path)
    cfg = load(None, role="status")
    assert cfg.general.instance == "from-default"
    assert cfg.source == path


def test_explicit_missing_path(tmp_path: pathlib.Path) -> None:
    missing = str(tmp_path / "nope.toml")
    with pytest.raises(ConfigError) as info:
        load(missing, role="status")
    assert str(info.value) == f"{missing}: no such file"


def test_path_is_a_directory(tmp_path: pathlib.Path) -> None:
    with pytest.raises(ConfigError, match=rf"^{tmp_path}: "):
        load(str(tmp_path), role="status")


def test_toml_syntax_error_names_file_and_line(tmp_path: pathlib.Path) -> None:
    message = error_of(tmp_path, '[general]\ninstance = "a"\nlog_level = info\n')
    path = str(tmp_path / "nfreplay.toml")
    assert message.startswith(f"{path}:3:"), message
    assert "(at line" not in message  # the position is in the prefix, not repeated


def test_toml_syntax_error_at_end_of_file(tmp_path: pathlib.Path) -> None:
    message = error_of(tmp_path, "[general]\ninstance =")
    assert message.startswith(f"{tmp_path / 'nfreplay.toml'}:2: "), message


def test_duplicate_key_is_a_syntax_error(tmp_path: pathlib.Path) -> None:
    message = error_of(tmp_path, "[online]\nmtu = 1500\nmtu = 1400\n")
    assert message.startswith(f"{tmp_path / 'nfreplay.toml'}:3:"), message


def test_not_utf8(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "nfreplay.toml"
    path.write_bytes(b'[general]\ninstance = "\xff"\n')
    with pytest.raises(ConfigError, match=rf"^{path}:2: not valid UTF-8$"):
        load(str(path), role="status")


# ------------------------------------------------------------------------------ etc/nfreplay.toml


@pytest.mark.parametrize("role", config.ROLES)
def test_example_file_loads_for_every_role(role: str) -> None:
    cfg = load(str(ETC), role=role)
    assert cfg.online.target_ip == "198.18.0.3"
    assert cfg.online.assistants == (("198.18.0.4", 36524),)
    assert cfg.assist.clients == ("198.18.1.0/24",)
    assert cfg.target.via == "198.18.0.4"


def test_example_file_lists_every_key_once() -> None:
    document = tomllib.loads(ETC.read_text())
    listed = [f"{section}.{key}" for section, table in document.items() for key in table]
    assert listed == config.keys()


def test_example_file_shows_the_defaults() -> None:
    """Every non-required key in the example carries the built-in default."""
    example = load(str(ETC), role="status")
    defaults = Config()
    for section in ("general", "online", "assist", "target"):
        got, want = getattr(example, section), getattr(defaults, section)
        for f in dataclasses.fields(want):
            if getattr(want, f.name) in (None, ()) and f.name not in ("passlist",):
                continue  # a required key: the example shows an example value
            if f.name == "service_ip":
                continue  # part of the required "service" key
            assert getattr(got, f.name) == getattr(want, f.name), f"{section}.{f.name}"


def test_example_file_uses_only_benchmark_addresses() -> None:
    lab = ipaddress.ip_network("198.18.0.0/15")
    cfg = load(str(ETC), role="status")
    ips = [cfg.online.target_ip, cfg.assist.target_ip, cfg.target.via, *(a for a, _ in cfg.online.assistants)]
    nets = [*cfg.assist.clients, *cfg.target.clients]
    assert all(ipaddress.ip_address(ip) in lab for ip in ips if ip)
    assert all(ipaddress.ip_network(n).subnet_of(lab) for n in nets)  # type: ignore[arg-type]
    for line in ETC.read_text().splitlines():
        for word in line.replace('"', " ").replace(",", " ").split():
            try:
                ip = ipaddress.ip_address(word.split(":")[0].split("/")[0])
            except ValueError:
                continue
            assert ip in lab or ip == ipaddress.ip_address("0.0.0.0"), line


def test_more_services_parse_tcpcopy_mappings() -> None:
    cfg = load(None, {"online.service": "80", "online.target": "198.18.0.3:80",
                      "online.assistants": "198.18.0.4",
                      "online.more_services": "8080-198.18.0.3:9090,198.18.0.2:81-198.18.0.5:81"},
               role="online")
    assert cfg.online.more_services == ((None, 8080, "198.18.0.3", 9090),
                                        ("198.18.0.2", 81, "198.18.0.5", 81))


def test_every_toml_example_in_the_readme_loads(tmp_path: pathlib.Path) -> None:
    """The README's configuration examples are the file an operator copies: each must load
    for every role whose section it has."""
    readme = (pathlib.Path(__file__).parents[2] / "README.md").read_text()
    blocks = re.findall(r"```toml\n(.*?)```", readme, re.S)
    assert len(blocks) >= 2
    for block in blocks:
        path = write(tmp_path, block)
        for role in ("online", "assist", "target"):
            if f"[{role}]" in block:
                config.load(path, role=role)
