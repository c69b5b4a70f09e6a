"""Tunnelled delivery's encapsulations: prefixes, overheads and the sizes derived from them."""

import struct

import pytest

from nfreplay.proto.tunnel import (
    DEFAULT, ENCAPSULATIONS, TARGET_MAC, VNI, encapsulation, inner_mtu, max_mss,
)  # fmt: skip


def test_each_overhead_is_its_prefix_plus_the_outer_headers() -> None:
    outer = {17: 20 + 8, 47: 20, 4: 20}
    for e in ENCAPSULATIONS.values():
        assert e.overhead == outer[e.ip_proto] + len(e.prefix), e.name
    assert {e.name: e.overhead for e in ENCAPSULATIONS.values()} == {
        "vxlan": 50, "fou": 28, "gre": 24, "ipip": 20}


def test_vxlan_prefix_is_a_vxlan_header_and_an_ethernet_header_to_the_target_device() -> None:
    e = encapsulation("vxlan")
    flags, vni = struct.unpack_from("!II", e.prefix)
    assert flags == 0x08000000 and vni >> 8 == VNI and vni & 0xFF == 0
    assert e.prefix[8:14] == TARGET_MAC and e.prefix[20:22] == b"\x08\x00"
    assert e.udp and DEFAULT == "vxlan"


def test_gre_header_carries_ipv4_without_key_or_checksum() -> None:
    assert encapsulation("gre").prefix == b"\x00\x00\x08\x00"


def test_sizes_leave_room_for_the_outer_headers() -> None:
    e = encapsulation("vxlan")
    assert inner_mtu(1500, e) == 1450 and max_mss(1500, e) == 1410
    assert max_mss(9001, encapsulation("ipip")) == 8941


def test_unknown_name_lists_the_choices() -> None:
    with pytest.raises(ValueError, match="vxlan, fou, gre, ipip"):
        encapsulation("l2tp")
