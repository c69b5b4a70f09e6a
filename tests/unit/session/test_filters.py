"""Client allow/deny lists, the LVS TOA option, and the first-request pattern."""

from __future__ import annotations

import ipaddress
import random
from collections.abc import Sequence

import pytest
from scapy.layers.inet import IP, TCP

from nfreplay.errors import ConfigError
from nfreplay.session.filters import DEFAULT_SCAN_LIMIT, ClientFilter, PayloadPattern, toa
from nfreplay.proto.tcpip import ip2int, parse

# --- ClientFilter ---------------------------------------------------------------------------------


def test_empty_filter_accepts_everything() -> None:
    f = ClientFilter()
    assert all(f.accepts(ip) for ip in (0, 1, ip2int("10.0.0.1"), 0xFFFFFFFF))


def test_allow_list() -> None:
    f = ClientFilter(allow=["10.0.0.0/8", "192.0.2.7"])
    assert f.accepts(ip2int("10.200.3.4"))
    assert f.accepts(ip2int("192.0.2.7"))
    assert not f.accepts(ip2int("192.0.2.8"))
    assert not f.accepts(ip2int("11.0.0.1"))


def test_deny_list_alone_allows_the_rest() -> None:
    f = ClientFilter(deny=["10.1.0.0/16"])
    assert not f.accepts(ip2int("10.1.2.3"))
    assert f.accepts(ip2int("10.2.2.3"))


def test_deny_wins_over_allow() -> None:
    f = ClientFilter(allow=["10.0.0.0/8"], deny=["10.1.0.0/16", "10.2.3.4/32"])
    assert f.accepts(ip2int("10.3.0.1"))
    assert not f.accepts(ip2int("10.1.0.1"))
    assert not f.accepts(ip2int("10.2.3.4"))
    assert f.accepts(ip2int("10.2.3.5"))
    everything_denied = ClientFilter(allow=["10.0.0.0/8"], deny=["0.0.0.0/0"])
    assert not everything_denied.accepts(ip2int("10.0.0.1"))


def test_filter_agrees_with_ipaddress_on_random_lists() -> None:
    rng = random.Random(3)
    for _ in range(50):
        def nets() -> list[ipaddress.IPv4Network]:
            out = []
            for _ in range(rng.randrange(0, 6)):
                prefix = rng.randrange(0, 33)
                addr = rng.getrandbits(32) & (0xFFFFFFFF << (32 - prefix)) & 0xFFFFFFFF
                out.append(ipaddress.IPv4Network((addr, prefix)))
            return out

        allow, deny = nets(), nets()
        f = ClientFilter([str(n) for n in allow], [str(n) for n in deny])
        probes = [rng.getrandbits(32) for _ in range(200)]
        probes += [int(n.network_address) for n in allow + deny]
        probes += [int(n.broadcast_address) for n in allow + deny]
        for ip in probes:
            a = ipaddress.IPv4Address(ip)
            expected = not any(a in n for n in deny) and (not allow or any(a in n for n in allow))
            assert f.accepts(ip) is expected


@pytest.mark.parametrize(
    ("allow", "deny", "message"),
    [
        (["10.0.0.0/33"], [], "clients allow: '10.0.0.0/33' is not an IPv4 address or CIDR"),
        ([], ["10.0.0.1/8"], "clients deny: '10.0.0.1/8' has host bits set (did you mean 10.0.0.0"),
        (["web"], [], "clients allow: 'web' is not an IPv4 address or CIDR"),
        (["2001:db8::/32"], [], "'2001:db8::/32' is not an IPv4 address or CIDR"),
        ([""], [], "clients allow: '' is not"),
    ],
)
def test_bad_cidrs_are_one_line_config_errors(
    allow: list[str], deny: list[str], message: str
) -> None:
    with pytest.raises(ConfigError) as exc:
        ClientFilter(allow, deny)
    assert message in str(exc.value) and "\n" not in str(exc.value)


def test_a_lone_string_is_a_type_error() -> None:
    with pytest.raises(TypeError):
        ClientFilter(allow="10.0.0.0/8")


# --- TOA ------------------------------------------------------------------------------------------

REAL = "203.0.113.77"


def syn(options: Sequence[object]) -> bytes:
    return bytes(IP(src="10.9.0.1", dst="10.0.0.2") / TCP(sport=33000, dport=80, flags="S",
                 options=options))  # fmt: skip


def test_toa_from_a_scapy_syn() -> None:
    pkt = syn([(254, b"\x1f\x90" + ipaddress.IPv4Address(REAL).packed)])
    assert toa(parse(pkt)) == (ip2int(REAL), 8080)


def test_toa_after_other_options_and_at_an_odd_offset() -> None:
    opt = b"\x30\x39" + ipaddress.IPv4Address(REAL).packed  # port 12345
    pkt = syn([("MSS", 1460), ("NOP", None), ("SAckOK", b""), ("Timestamp", (1, 0)),
               (254, opt), ("WScale", 7)])  # fmt: skip
    seg = parse(pkt)
    assert toa(seg) == (ip2int(REAL), 12345)
    # The same option on a data segment, with IPv4 options in front (another header offset).
    data = bytes(IP(src="10.9.0.1", dst="10.0.0.2", options=b"\x01\x01\x01\x00")
                 / TCP(flags="PA", options=[(254, opt)]) / b"GET / HTTP/1.1\r\n\r\n")  # fmt: skip
    assert parse(data).ihl == 24 and toa(parse(data)) == (ip2int(REAL), 12345)


def test_no_toa() -> None:
    assert toa(parse(syn([("MSS", 1460), ("Timestamp", (1, 0))]))) is None
    assert toa(parse(syn([]))) is None


@pytest.mark.parametrize(
    "raw_options",
    [
        b"\xfe\x06\x1f\x90\xcb\x00",  # length 6
        b"\xfe\x14" + bytes(18),  # length 20: the IPv6 variant
        b"\x02\x01" + b"\xfe\x08\x1f\x90\xcb\x00\x71\x4d",  # broken option list before it
        b"\x01\x01\x01\x01\xfe\x08\x1f\x90",  # runs past the TCP header
    ],
)
def test_malformed_toa_is_none(raw_options: bytes) -> None:
    pkt = bytearray(syn([]))
    pad = raw_options + bytes(-len(raw_options) % 4)
    pkt[40:40] = pad
    pkt[32] = (20 + len(pad)) // 4 << 4
    pkt[2:4] = len(pkt).to_bytes(2, "big")
    assert toa(parse(pkt)) is None


def test_toa_cut_by_the_buffer_is_none() -> None:
    pkt = syn([("Timestamp", (1, 0)), (254, b"\x1f\x90" + bytes(4))])
    # TOA at bytes 50-57: a buffer of 56 bytes (a header record, a snaplen) cuts it.
    seg = parse(pkt[:56])
    assert toa(seg) is None
    assert toa(parse(pkt)) == (0, 8080)


# --- PayloadPattern -------------------------------------------------------------------------------


def test_pattern_searches_the_payload() -> None:
    p = PayloadPattern(r"^(GET|POST) /api/")
    assert p.matches(b"GET /api/users HTTP/1.1\r\n")
    assert p.matches(memoryview(b"POST /api/x HTTP/1.1\r\n"))
    assert p.matches(bytearray(b"GET /api/"))
    assert not p.matches(b"GET /static/app.js HTTP/1.1\r\n")
    assert not p.matches(b"")
    unanchored = PayloadPattern("Host: shop[.]example")
    assert unanchored.matches(b"GET / HTTP/1.1\r\nHost: shop.example\r\n\r\n")
    assert PayloadPattern(rb"\x00\x01").matches(b"\xff\x00\x01")  # a bytes pattern


def test_pattern_looks_at_the_first_limit_bytes_only() -> None:
    p = PayloadPattern("needle", limit=100)
    assert p.matches(b"x" * 94 + b"needle")  # ends exactly at the limit
    assert not p.matches(b"x" * 95 + b"needle")  # one byte past it
    assert PayloadPattern("needle").limit == DEFAULT_SCAN_LIMIT == 4096
    default = PayloadPattern("needle")
    assert default.matches(b"x" * 4090 + b"needle")
    assert not default.matches(memoryview(b"x" * 4091 + b"needle"))
    assert PayloadPattern("x$", limit=3).matches(b"aax-and-more")  # $ is the window's end


def test_pattern_text_is_utf8() -> None:
    p = PayloadPattern("café")
    assert p.matches("GET /café".encode())
    assert not p.matches("GET /café".encode("latin-1"))
    assert p.pattern == "café"


@pytest.mark.parametrize("regex", ["(GET", "[a-", "*x", "x{99999999999}", rb"(?P<1>x)"])
def test_bad_regex_is_a_one_line_config_error(regex: str | bytes) -> None:
    with pytest.raises(ConfigError) as exc:
        PayloadPattern(regex)
    text = str(exc.value)
    assert text.startswith(f"request pattern {regex!r}: bad regular expression: ")
    assert "\n" not in text


@pytest.mark.parametrize("limit", [0, -5, True, 1.5])
def test_bad_limit_is_a_value_error(limit: int) -> None:
    with pytest.raises(ValueError, match="limit"):
        PayloadPattern("x", limit=limit)
