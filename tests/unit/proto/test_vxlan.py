"""The mirror input's per-datagram decision (proto.vxlan): VXLAN header, VNI, the inner
Ethernet/VLAN frame through the one link decoder, the capture filter's choice, duplicates."""

from __future__ import annotations

import os
import tempfile

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nfreplay.proto import tcpip, vxlan
from nfreplay.proto.tcpip import ACK, PSH, SYN, ip2int
from nfreplay.proto.vxlan import BAD, DUPLICATE, OTHER, OTHER_VNI, REPLY, MirrorFilter

if not os.environ.get("HYPOTHESIS_STORAGE_DIRECTORY"):
    _STORAGE = tempfile.TemporaryDirectory(prefix="nfreplay-hypothesis-")
    os.environ["HYPOTHESIS_STORAGE_DIRECTORY"] = _STORAGE.name

CLIENT, ONLINE, OTHER_HOST = ip2int("198.18.1.10"), ip2int("198.18.0.2"), ip2int("198.18.0.9")
TARGET = ip2int("198.18.0.3")
MACS = bytes.fromhex("020000000002" "020000000001")


def vx(inner: bytes, vni: int = 42, flags: int = 0x08) -> bytes:
    return bytes([flags, 0, 0, 0]) + vni.to_bytes(3, "big") + b"\0" + inner


def eth(ip: bytes, etype: bytes = b"\x08\x00", tags: bytes = b"") -> bytes:
    return MACS + tags + etype + ip


def pkt(src: int = CLIENT, dst: int = ONLINE, sport: int = 40000, dport: int = 80,
        flags: int = ACK | PSH, payload: bytes = b"GET / HTTP/1.1\r\n\r\n", seq: int = 1000,
        ip_id: int = 7, ttl: int = 64) -> bytearray:
    return tcpip.build(src, dst, sport, dport, seq, 5000, flags, payload=payload, ip_id=ip_id,
                       ttl=ttl)


def mirror(**kw: object) -> MirrorFilter:
    kw.setdefault("services", [(None, 80)])
    kw.setdefault("targets", [(TARGET, 80)])
    return MirrorFilter(**kw)  # type: ignore[arg-type]


def test_header_gives_the_vni_or_bad() -> None:
    assert vxlan.header(vx(b"", vni=0xABCDEF)) == 0xABCDEF
    assert vxlan.header(vx(b"", vni=0)) == 0
    assert vxlan.header(vx(b"", flags=0x00)) == BAD  # the I flag clear
    assert vxlan.header(vx(b"", flags=0x88)) == 42  # other flag bits are ignored (GBP, ...)
    assert vxlan.header(b"\x08\0\0\0\0\0\x2a") == BAD  # 7 bytes


def test_a_client_packet_to_the_service_is_kept_at_its_ip_offset() -> None:
    m = mirror()
    p = pkt()
    assert m.inner(vx(eth(p))) == 8 + 14
    # 802.1Q and QinQ tags go through the one link decoder.
    assert m.inner(vx(eth(pkt(ip_id=8), tags=b"\x81\x00\x00\x05"))) == 8 + 18
    assert m.inner(vx(eth(pkt(ip_id=9), tags=b"\x88\xa8\x00\x05\x81\x00\x00\x06"))) == 8 + 22
    # Ethernet padding after the IP packet (short frames) is allowed.
    datagram = vx(eth(pkt(flags=SYN, payload=b"", ip_id=10)) + bytes(6))
    off = m.inner(datagram)
    assert off == 22
    seg = tcpip.parse(datagram, off)
    assert tcpip.complete(seg) and seg.flags == SYN


def test_service_addresses_and_ports_like_the_capture_filter() -> None:
    m = MirrorFilter([(ONLINE, 80), (None, 8080)], [(TARGET, 80)])
    assert m.inner(vx(eth(pkt(dport=80)))) == 22
    assert m.inner(vx(eth(pkt(dst=OTHER_HOST, dport=80)))) == OTHER  # another host's port 80
    assert m.inner(vx(eth(pkt(dst=OTHER_HOST, dport=8080)))) == 22  # any address
    assert m.inner(vx(eth(pkt(dport=81)))) == OTHER
    # What nfreplay sends to a target is never taken for a client's packet.
    t = MirrorFilter([(None, 80)], [(TARGET, 80)])
    assert t.inner(vx(eth(pkt(dst=TARGET)))) == OTHER


def test_production_replies_and_other_traffic_are_told_apart() -> None:
    m = MirrorFilter([(ONLINE, 80)], [(TARGET, 80)])
    reply = pkt(src=ONLINE, dst=CLIENT, sport=80, dport=40000, payload=b"HTTP/1.1 200 OK\r\n")
    assert m.inner(vx(eth(reply))) == REPLY
    # From port 80 of another address: not this service's reply.
    assert m.inner(vx(eth(pkt(src=OTHER_HOST, dst=CLIENT, sport=80, dport=40000)))) == OTHER
    udp = bytearray(pkt())
    udp[9] = 17
    assert m.inner(vx(eth(udp))) == OTHER
    assert m.inner(vx(eth(b"\0" * 28, etype=b"\x08\x06"))) == OTHER  # ARP
    assert m.inner(vx(eth(b"\x60" + bytes(60), etype=b"\x86\xdd"))) == OTHER  # IPv6
    fragment = bytearray(pkt())
    fragment[6] = 0x20  # MF
    assert m.inner(vx(eth(fragment))) == OTHER


def test_undecodable_datagrams_are_bad() -> None:
    m = mirror()
    good = vx(eth(pkt()))
    assert m.inner(b"") == BAD
    assert m.inner(b"garbage!" * 3) == BAD  # no I flag
    assert m.inner(good[:8]) == BAD  # no inner frame
    assert m.inner(good[:8 + 13]) == BAD  # cut in the Ethernet header
    assert m.inner(good[:8 + 14 + 19]) == BAD  # cut in the IP header
    assert m.inner(good[:-1]) == BAD  # one byte short of tot_len (a truncating mirror)
    v6 = bytearray(pkt())
    v6[0] = 0x65
    assert m.inner(vx(eth(v6))) == BAD  # says IPv4 (ethertype), is not
    short_ihl = bytearray(pkt())
    short_ihl[0] = 0x44
    assert m.inner(vx(eth(short_ihl))) == BAD
    doff = bytearray(pkt())
    doff[32] = 0x40  # TCP data offset 16 bytes
    assert m.inner(vx(eth(doff))) == BAD
    long_doff = bytearray(pkt(payload=b""))
    long_doff[32] = 0xF0  # 60 bytes of TCP header in a 40-byte packet
    assert m.inner(vx(eth(long_doff))) == BAD


def test_only_the_configured_vni() -> None:
    m = mirror(vni=42)
    assert m.inner(vx(eth(pkt()), vni=42)) == 22
    assert m.inner(vx(eth(pkt(ip_id=99)), vni=43)) == OTHER_VNI
    assert mirror(vni=None).inner(vx(eth(pkt()), vni=43)) == 22
    assert mirror(vni=0).inner(vx(eth(pkt()), vni=0)) == 22


def test_exact_duplicates_are_kept_once_retransmissions_are_not_duplicates() -> None:
    m = mirror()
    first = pkt()
    assert m.inner(vx(eth(first))) == 22
    assert m.inner(vx(eth(first))) == DUPLICATE
    # The same packet mirrored after a router (TTL and IP checksum changed), or under
    # another VNI or with VLAN tags: still the same packet.
    assert m.inner(vx(eth(pkt(ttl=63)))) == DUPLICATE
    assert m.inner(vx(eth(first, tags=b"\x81\x00\x00\x05"), vni=7)) == DUPLICATE
    # The client's own retransmission is a new IP packet (its id differs): handed on, the
    # session machine knows what to do with it.
    assert m.inner(vx(eth(pkt(ip_id=8)))) == 22
    # Replies and other traffic are not remembered: they never reach the engine anyway.
    reply = vx(eth(pkt(src=ONLINE, dst=CLIENT, sport=80, dport=40000)))
    assert m.inner(reply) == REPLY and m.inner(reply) == REPLY


def test_the_duplicate_window_is_bounded() -> None:
    m = mirror(window=4)
    packets = [vx(eth(pkt(ip_id=i))) for i in range(5)]
    for p in packets:
        assert m.inner(p) == 22
    # The first one fell out of the window of 4: kept again (the session machine drops its
    # bytes as a retransmission); the last four are still remembered.
    assert m.inner(packets[0]) == 22
    assert [m.inner(p) for p in packets[2:]] == [DUPLICATE] * 3
    assert len(m._seen) == 4
    off = mirror(window=0)
    assert off.inner(packets[0]) == 22 and off.inner(packets[0]) == 22


FUZZ = settings(derandomize=True, database=None, deadline=None, max_examples=1000,
                suppress_health_check=[HealthCheck.too_slow])


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    """A valid mirrored client packet, then bytes flipped, cut or added anywhere."""
    base = bytearray(vx(eth(pkt(ip_id=draw(st.integers(0, 0xFFFF)),
                                dport=draw(st.sampled_from([80, 8080, 81])),
                                src=draw(st.sampled_from([CLIENT, ONLINE])),
                                sport=draw(st.sampled_from([40000, 80, 8080])),
                                payload=draw(st.sampled_from([b"", b"GET / HTTP/1.1\r\n\r\n"]))),
                            tags=draw(st.sampled_from([b"", b"\x81\x00\x00\x05"])))))
    for _ in range(draw(st.integers(0, 4))):
        i = draw(st.integers(0, len(base) - 1))
        base[i] = draw(st.integers(0, 255))
    cut = draw(st.integers(0, len(base)))
    return bytes(base[:cut]) + draw(st.binary(max_size=8))


@FUZZ
@given(st.one_of(st.binary(max_size=120), mutated()))
def test_any_datagram_gets_a_verdict_and_a_kept_one_is_whole(datagram: bytes) -> None:
    m = MirrorFilter([(None, 80), (ONLINE, 8080)], [(TARGET, 80)], vni=None)
    v = m.inner(datagram)
    # The one-unpack way of the usual datagram and the general way agree on every input.
    general = MirrorFilter([(None, 80), (ONLINE, 8080)], [(TARGET, 80)], vni=None, window=0)
    assert general._inner(datagram) == v
    assert v in vxlan.VERDICTS or v >= 0
    if v >= 0:
        seg = tcpip.parse(datagram, v)
        assert tcpip.complete(seg)
        assert seg.dport in (80, 8080) and not (seg.dst == TARGET and seg.dport == 80)
        assert m.inner(datagram) == DUPLICATE
