"""Which captured connections are replayed, and as what: filters (with TOA), sampling,
the new-session rate, several service ports, client pools and copies."""

from __future__ import annotations

from nfreplay.session.clientpool import parse_pool
from nfreplay.session.filters import ClientFilter
from nfreplay.proto import channel, checksum, tcpip
from nfreplay.proto.tcpip import ACK, PSH, SYN, ip2int
from nfreplay.session.machine import Announce, Counters, Params
from nfreplay.session.selection import Selection
from nfreplay.session.table import SessionTable

CLIENT, ONLINE, TARGET = ip2int("198.18.1.10"), ip2int("198.18.0.2"), ip2int("198.18.0.3")
P = Params(target_ip=TARGET, target_port=80)


class Never:
    def keep(self, ip: int, port: int, now: float) -> bool:
        return False


def table(**kw: object) -> SessionTable:
    return SessionTable(P, Counters(), Selection(**kw))  # type: ignore[arg-type]


def send(t: SessionTable, flags: int, seq: int, payload: bytes = b"", port: int = 40000,
         src: int = CLIENT, dport: int = 80, opts: bytes = b"", now: float = 10.0) -> list:
    pkt = tcpip.build(src, ONLINE, port, dport, seq, 5, flags, payload=payload, options=opts)
    out: list = []
    t.client_packet(tcpip.parse(pkt), pkt, now, out)
    return out


def syn_ack(t: SessionTable, client: int, port: int, ack: int, src: int = TARGET,
            sport: int = 80) -> list:
    out: list = []
    rec = channel.make_record(tcpip.build(src, client, sport, port, 900, ack, SYN | ACK))
    t.response(tcpip.parse(rec), 10.0, out)
    return out


def test_denied_client_is_not_replayed_and_its_later_packets_are_not_joined_midstream() -> None:
    t = table(client_filter=ClientFilter(deny=["198.18.1.0/24"]))
    assert send(t, SYN, 100) == []
    assert send(t, ACK | PSH, 101, b"GET /") == []
    assert t.c.sessions_filtered == 1 and t.c.packets_not_selected == 1 and len(t) == 0


def test_toa_option_gives_the_real_client_to_the_filter() -> None:
    real = ip2int("198.19.7.7")
    toa = bytes([254, 8]) + (1234).to_bytes(2, "big") + real.to_bytes(4, "big")
    t = table(client_filter=ClientFilter(allow=["198.19.7.0/24"]))
    assert send(t, SYN, 100, opts=toa)  # the LVS address is not allowed, the real one is
    assert send(t, SYN, 100, port=40001) == []  # no TOA: judged on the LVS address
    assert t.c.sessions_filtered == 1 and t.sel.toa_seen == 1


def test_sampled_out_connection_is_judged_again_on_its_next_syn() -> None:
    t = table(sampler=Never())
    send(t, SYN, 100)
    assert t.c.sessions_sampled_out == 1
    t.sel.sampler = None
    assert send(t, SYN, 5000)  # a new connection on the same ip:port
    assert t.c.sessions_opened == 1


def test_new_sessions_per_second_are_limited() -> None:
    t = table(new_per_second=2)
    opened = [bool(send(t, SYN, 100, port=40000 + i, now=10.0)) for i in range(4)]
    assert opened == [True, True, False, False] and t.c.sessions_rate_limited == 2
    assert send(t, SYN, 100, port=41000, now=10.6)  # refilled
    assert t.c.sessions_opened == 3


def test_several_service_ports_go_to_their_own_targets() -> None:
    other = ip2int("198.18.0.5")
    t = table(targets={8080: (other, 9090)})
    out = send(t, SYN, 100, dport=8080)
    ann, syn = out
    assert (ann.target_ip, ann.target_port) == (other, 9090)
    s = tcpip.parse(syn)
    assert (s.dst, s.dport) == (other, 9090) and checksum.verify(syn)
    out = send(t, SYN, 100, port=40001)
    assert (out[0].target_ip, out[0].target_port) == (TARGET, 80)


def test_copies_replay_each_connection_on_distinct_pool_pairs() -> None:
    pool = parse_pool(["198.18.2.0/24"])
    t = table(copies=3, pool=pool)
    out = send(t, SYN, 100)
    anns = [x for x in out if type(x) is Announce]
    syns = [tcpip.parse(x) for x in out if type(x) is not Announce]
    pairs = {(a.client_ip, a.client_port) for a in anns}
    assert len(pairs) == 3 and all(tcpip.int2ip(ip).startswith("198.18.2.") for ip, _ in pairs)
    assert {(s.src, s.sport) for s in syns} == pairs and all(s.seq == 100 for s in syns)
    # Each copy completes its own handshake and gets the request, from its own address.
    sent = []
    for ip, port in pairs:
        sent += syn_ack(t, ip, port, 101)
    data = send(t, ACK | PSH, 101, b"GET /x HTTP/1.1\r\n\r\n")
    assert {(tcpip.parse(p).src, tcpip.parse(p).sport) for p in data} == pairs
    assert all(checksum.verify(p) for p in sent + data)
    assert t.c.sessions_established == 3 and t.c.copies_unallocated == 0


def test_exhausted_pool_is_counted() -> None:
    # One address, two spare ports: copy 0 keeps the client's port, the others share two.
    t = table(copies=3, pool=(ip2int("198.18.2.1"),), port_range=(50000, 50001))
    for i in range(3):
        send(t, SYN, 100, port=40000 + i)
    assert t.c.sessions_opened == 5 and t.c.copies_unallocated == 4


def test_first_request_pattern_holds_the_syn_until_the_request_is_judged() -> None:
    from nfreplay.session.filters import PayloadPattern

    t = table(payload=PayloadPattern(rb"^GET /api/"))
    assert send(t, SYN, 100) == []  # held: nothing announced, nothing sent
    send(t, ACK, 101)
    out = send(t, ACK | PSH, 101, b"GET /api/x HTTP/1.1\r\n\r\n")
    assert type(out[0]) is Announce and tcpip.parse(out[1]).flags == SYN
    assert tcpip.parse(out[1]).seq == 100
    out = syn_ack(t, CLIENT, 40000, 101)
    assert [tcpip.parse(p).payload_len for p in out] == [23]  # the request completes the handshake

    assert send(t, SYN, 500, port=40001) == []
    assert send(t, ACK | PSH, 501, b"GET /static/y HTTP/1.1\r\n\r\n", port=40001) == []
    assert send(t, ACK | PSH, 525, b"more", port=40001) == []  # not joined mid-stream
    assert t.c.sessions_filtered == 1 and t.c.packets_not_selected == 1
    assert t.c.syns_sent == 1 and t.c.sessions_live == 1
