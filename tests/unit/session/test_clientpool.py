"""Client pool parsing, the sticky client map, and the collision-free port allocator."""

from __future__ import annotations

import random

import pytest

from nfreplay.session.clientpool import MAX_POOL, ClientMap, PortAllocator, parse_pool
from nfreplay.errors import ConfigError
from nfreplay.proto.tcpip import int2ip, ip2int


def ips(*addrs: str) -> tuple[int, ...]:
    return tuple(ip2int(a) for a in addrs)


def dotted(pool: tuple[int, ...]) -> list[str]:
    return [int2ip(ip) for ip in pool]


# --- parse_pool -----------------------------------------------------------------------------------


def test_single_addresses_keep_their_order_and_duplicates_go() -> None:
    pool = parse_pool(["10.0.0.9", "10.0.0.2", "10.0.0.9", "10.0.0.5"])
    assert dotted(pool) == ["10.0.0.9", "10.0.0.2", "10.0.0.5"]


def test_ranges() -> None:
    assert dotted(parse_pool(["10.0.0.254-10.0.1.1"])) == [
        "10.0.0.254", "10.0.0.255", "10.0.1.0", "10.0.1.1",
    ]  # fmt: skip
    assert dotted(parse_pool(["10.0.0.10-12"])) == ["10.0.0.10", "10.0.0.11", "10.0.0.12"]
    assert dotted(parse_pool(["10.0.0.7-10.0.0.7"])) == ["10.0.0.7"]
    assert dotted(parse_pool([" 10.0.0.1 - 2 "])) == ["10.0.0.1", "10.0.0.2"]


@pytest.mark.parametrize(
    ("spec", "first", "last", "size"),
    [
        ("192.0.2.0/24", "192.0.2.1", "192.0.2.254", 254),
        ("192.0.2.0/30", "192.0.2.1", "192.0.2.2", 2),
        ("192.0.2.0/31", "192.0.2.0", "192.0.2.1", 2),
        ("192.0.2.9/32", "192.0.2.9", "192.0.2.9", 1),
        ("192.0.2.9", "192.0.2.9", "192.0.2.9", 1),
        ("198.18.0.0/15", "198.18.0.1", "198.19.255.254", 2**17 - 2),
        ("192.0.2.x", "192.0.2.1", "192.0.2.254", 254),  # tcpcopy -c
    ],
)
def test_cidrs_leave_out_network_and_broadcast_up_to_slash_30(
    spec: str, first: str, last: str, size: int
) -> None:
    pool = parse_pool([spec])
    assert (int2ip(pool[0]), int2ip(pool[-1]), len(pool)) == (first, last, size)
    assert list(pool) == sorted(pool)


def test_comma_separated_specs_and_overlaps() -> None:
    pool = parse_pool(["10.0.0.1,10.0.0.0/30", "10.0.0.2-4"])
    assert dotted(pool) == ["10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4"]


def test_targets_are_excluded() -> None:
    pool = parse_pool(["10.0.0.0/29"], exclude=["10.0.0.3", "10.0.0.5-6"])
    assert dotted(pool) == ["10.0.0.1", "10.0.0.2", "10.0.0.4"]
    pool = parse_pool(["10.0.0.0/24", "10.0.1.1"], exclude=["10.0.0.0/25"])
    assert dotted(pool)[:2] == ["10.0.0.128", "10.0.0.129"] and len(pool) == 128
    assert parse_pool(["10.0.0.1-3"], exclude=["10.0.0.2", "10.0.0.0/31"]) == ips("10.0.0.3")
    assert parse_pool(["10.0.0.1-3"], exclude=["10.0.0.9", "9.0.0.0/8"]) == ips(
        "10.0.0.1", "10.0.0.2", "10.0.0.3"
    )  # targets outside the pool


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("10.0.0.256", "'10.0.0.256' is not an IPv4 address, range or CIDR"),
        ("web1", "'web1' is not an IPv4 address, range or CIDR"),
        ("10.0.0.1-10.0.0", "'10.0.0.1-10.0.0' is not an IPv4 address, range or CIDR"),
        ("10.0.0.1-256", "'10.0.0.1-256' is not an IPv4 address, range or CIDR"),
        ("10.0.0.9-3", "range '10.0.0.9-3' ends before it starts"),
        ("10.0.0.0/33", "'10.0.0.0/33' is not an IPv4 CIDR"),
        ("10.0.0.5/24", "'10.0.0.5/24' has host bits set (did you mean 10.0.0.0/24?)"),
        ("::1", "'::1' is not an IPv4 address, range or CIDR"),
        ("224.0.0.5", "'224.0.0.5' includes 224.0.0.0/4, not usable as a client address"),
        ("0.0.0.0", "'0.0.0.0' includes 0.0.0.0/8, not usable as a client address"),
        ("255.255.255.255", "includes 240.0.0.0/4"),
        ("223.255.255.0-224.0.0.1", "includes 224.0.0.0/4"),
        ("", "empty address in ''"),
        ("10.0.0.1,", "empty address in '10.0.0.1,'"),
    ],
)
def test_bad_specs_are_config_errors_naming_the_spec(spec: str, message: str) -> None:
    with pytest.raises(ConfigError) as exc:
        parse_pool(["10.0.0.1", spec], key="online.clients")
    text = str(exc.value)
    assert text.startswith("online.clients: ") and message in text and "\n" not in text


def test_bad_exclude_and_empty_results() -> None:
    with pytest.raises(ConfigError, match="client pool exclude: 'target' is not"):
        parse_pool(["10.0.0.1"], exclude=["target"])
    with pytest.raises(ConfigError, match="no address left in '10.0.0.1' after excluding"):
        parse_pool(["10.0.0.1"], exclude=["10.0.0.1"])
    with pytest.raises(ConfigError, match="no address left"):
        parse_pool([])


def test_pool_size_cap() -> None:
    assert len(parse_pool(["10.0.0.0/12"])) == MAX_POOL - 2
    with pytest.raises(ConfigError, match=r"^client pool: 2097152 addresses exceed the limit"):
        parse_pool(["10.0.0.0/11"])
    with pytest.raises(ConfigError, match="exceed the limit"):
        parse_pool(["10.0.0.0/12", "11.0.0.0/24"])


def test_a_lone_string_is_a_type_error() -> None:
    with pytest.raises(TypeError):
        parse_pool("10.0.0.1")


# --- ClientMap ------------------------------------------------------------------------------------


def test_client_map_is_sticky_round_robin_in_order_of_first_appearance() -> None:
    pool = ips("192.0.2.1", "192.0.2.2", "192.0.2.3")
    m = ClientMap(pool)
    a, b, c, d, e = ips("10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4", "10.0.0.5")
    assert [m.map_ip(x) for x in (b, a, b, c, d, a, e, d)] == [
        pool[0], pool[1], pool[0], pool[2], pool[0], pool[1], pool[1], pool[0],
    ]  # fmt: skip
    assert len(m) == 5


def test_client_map_has_no_16_bit_key_collisions() -> None:
    # tcpcopy's key (ip >> 16) + ip, 16 bits: both are 0x0406 and would share an entry.
    x, y = ips("1.2.3.4"), ips("0.0.4.6")
    assert ((x[0] >> 16) + x[0]) & 0xFFFF == ((y[0] >> 16) + y[0]) & 0xFFFF
    m = ClientMap(ips("192.0.2.1", "192.0.2.2"))
    assert m.map_ip(x[0]) != m.map_ip(y[0])


def test_client_map_needs_a_pool() -> None:
    with pytest.raises(ValueError):
        ClientMap(())


# --- PortAllocator: policy ------------------------------------------------------------------------

CLIENT = ip2int("10.1.1.1")


def test_own_addresses_copy_0_keeps_the_original_pair_the_copies_get_other_ports() -> None:
    alloc = PortAllocator()
    assert alloc.allocate(CLIENT, 40000, 0, 0.0) == (CLIENT, 40000)
    copies = [alloc.allocate(CLIENT, 40000, c, 0.0) for c in range(1, 4)]
    assert copies == [(CLIENT, 1024), (CLIENT, 1025), (CLIENT, 1026)]
    # The client's next session reuses a port a copy holds: it gets another one.
    assert alloc.allocate(CLIENT, 1025, 0, 0.0) == (CLIENT, 1027)
    assert (alloc.allocated, alloc.failed, alloc.in_use()) == (5, 0, 5)
    assert (CLIENT, 40000) in alloc and (CLIENT, 41000) not in alloc and "x" not in alloc


def test_pool_copies_spread_over_pool_addresses_keeping_the_port() -> None:
    pool = parse_pool(["192.0.2.1-4"])
    alloc = PortAllocator(pool)
    first = [alloc.allocate(CLIENT, 40000, c, 0.0) for c in range(6)]
    assert first == [(pool[c % 4], 40000) for c in range(4)] + [(pool[0], 1024), (pool[1], 1024)]
    other = ip2int("10.1.1.2")  # the second client's home is pool[1]
    assert alloc.allocate(other, 50000, 0, 0.0) == (pool[1], 50000)
    assert alloc.allocate(other, 40000, 0, 0.0) == (pool[1], 1025)  # pool[1]:40000 is live


def test_pool_copy_0_keeps_its_pair_when_the_client_is_in_the_pool() -> None:
    pool = parse_pool(["192.0.2.1-4"])
    alloc = PortAllocator(pool)
    assert alloc.allocate(pool[2], 40000, 0, 0.0) == (pool[2], 40000)
    assert alloc.allocate(pool[2], 40000, 1, 0.0) == (pool[1], 40000)  # home 0, copy 1


def test_quarantine_holds_a_released_pair_for_reuse_delay() -> None:
    alloc = PortAllocator(reuse_delay=60.0)
    pair = alloc.allocate(CLIENT, 40000, 0, 100.0)
    assert pair == (CLIENT, 40000)
    alloc.release(pair, 100.0)
    assert alloc.in_use() == 0 and alloc.quarantined() == 1
    assert alloc.allocate(CLIENT, 40000, 0, 159.9) == (CLIENT, 1024)
    alloc.release((CLIENT, 1024), 159.9)
    assert alloc.allocate(CLIENT, 40000, 0, 10.0) == (CLIENT, 1025)  # a clock going back
    assert alloc.allocate(CLIENT, 40000, 0, 160.0) == (CLIENT, 40000)
    assert alloc.quarantined() == 1


def test_a_clock_going_back_never_shortens_quarantine() -> None:
    alloc = PortAllocator(reuse_delay=60.0)
    alloc.allocate(ip2int("10.9.9.9"), 1, 0, 100.0)  # the allocator has seen t = 100
    pair = alloc.allocate(CLIENT, 40000, 0, 10.0)
    assert pair == (CLIENT, 40000)
    alloc.release(pair, 10.0)  # a stale clock: this release happened at 100 or later
    assert alloc.allocate(CLIENT, 40000, 0, 159.0) == (CLIENT, 1024)
    assert alloc.allocate(CLIENT, 40000, 0, 160.0) == (CLIENT, 40000)


def test_without_reuse_delay_a_pair_is_free_at_once() -> None:
    alloc = PortAllocator(reuse_delay=0)
    alloc.release(alloc.allocate(CLIENT, 40000, 0, 0.0) or (0, 0), 0.0)
    assert alloc.allocate(CLIENT, 40000, 0, 0.0) == (CLIENT, 40000)


def test_exhaustion_is_counted_and_ends_when_quarantine_ends() -> None:
    alloc = PortAllocator(port_range=(2000, 2003), reuse_delay=10.0)
    got = [alloc.allocate(CLIENT, 80, c, 0.0) for c in range(6)]
    assert got == [(CLIENT, 80), (CLIENT, 2000), (CLIENT, 2001), (CLIENT, 2002), (CLIENT, 2003),
                   None]  # fmt: skip
    assert alloc.failed == 1 and alloc.allocated == 5
    alloc.release((CLIENT, 2001), 1.0)
    alloc.release((CLIENT, 2003), 2.0)
    assert alloc.allocate(CLIENT, 80, 1, 5.0) is None
    assert alloc.allocate(CLIENT, 80, 1, 11.0) == (CLIENT, 2001)  # oldest release first
    assert alloc.allocate(CLIENT, 80, 1, 11.0) is None
    assert alloc.allocate(CLIENT, 80, 1, 12.0) == (CLIENT, 2003)
    assert alloc.failed == 3
    other = ip2int("10.1.1.2")  # a full address does not affect another one
    assert alloc.allocate(other, 80, 1, 12.0) == (other, 2000)


def test_pool_exhaustion_moves_on_to_other_addresses_then_fails() -> None:
    pool = parse_pool(["192.0.2.1-2"])
    alloc = PortAllocator(pool, port_range=(3000, 3001))
    got = {alloc.allocate(CLIENT, 3000, c, 0.0) for c in range(4)}
    assert got == {(ip, port) for ip in pool for port in (3000, 3001)}
    assert alloc.allocate(CLIENT, 3000, 4, 0.0) is None and alloc.failed == 1


def test_misuse() -> None:
    alloc = PortAllocator()
    pair = alloc.allocate(CLIENT, 40000, 0, 0.0)
    assert pair is not None
    alloc.release(pair, 0.0)
    with pytest.raises(ValueError, match="not in use"):
        alloc.release(pair, 0.0)
    with pytest.raises(ValueError, match="not in use"):
        alloc.release((CLIENT, 1), 0.0)
    for args in ((-1, 80, 0), (2**32, 80, 0), (CLIENT, 65536, 0), (CLIENT, 80, -1)):
        with pytest.raises(ValueError):
            alloc.allocate(*args, 0.0)
    for port_range in ((0, 10), (10, 9), (1, 65536)):
        with pytest.raises(ValueError, match="port range"):
            PortAllocator(port_range=port_range)
    with pytest.raises(ValueError, match="reuse_delay"):
        PortAllocator(reuse_delay=-1)


# --- PortAllocator: properties --------------------------------------------------------------------


def _check_random_operations(seed: int, pool: tuple[int, ...], clients: tuple[int, ...],
                             port_range: tuple[int, int], ops: int) -> PortAllocator:  # fmt: skip
    """Random allocate/release with a clock; after each step: no live pair twice, none handed
    out in quarantine, and no failure while a pair it may use is free (brute force)."""
    rng = random.Random(seed)
    delay = 5.0
    alloc = PortAllocator(pool, port_range, reuse_delay=delay)
    live: set[tuple[int, int]] = set()
    released_at: dict[tuple[int, int], float] = {}
    now = 0.0
    successes = failures = 0
    lo, hi = port_range
    for _ in range(ops):
        now += rng.choice([0.0, 0.0, 0.01, 0.5])
        if live and rng.random() < 0.45:
            pair = rng.choice(sorted(live)) if len(live) < 64 else live.pop()
            live.discard(pair)
            alloc.release(pair, now)
            released_at[pair] = now
            continue
        client = rng.choice(clients)
        port = rng.choice([rng.randrange(lo, hi + 1), rng.randrange(1, 65536)])
        copy = rng.choice([0, 0, 1, 2, rng.randrange(100)])
        got = alloc.allocate(client, port, copy, now)

        def busy(p: tuple[int, int], now: float = now) -> bool:
            return p in live or now < released_at.get(p, -1e9) + delay

        if got is None:
            failures += 1
            space = [(ip, p) for ip in (pool or (client,)) for p in range(lo, hi + 1)]
            assert all(busy(p) for p in space), "failed while a pair was free"
            continue
        successes += 1
        assert not busy(got), f"handed out {got} while busy"
        if pool:
            assert got[0] in pool or (copy == 0 and got == (client, port))
        else:
            assert got[0] == client
        live.add(got)
        assert alloc.in_use() == len(live)
    assert (alloc.allocated, alloc.failed) == (successes, failures)
    return alloc


@pytest.mark.parametrize("seed", range(3))
def test_random_operations_own_addresses_small_port_space(seed: int) -> None:
    clients = ips("10.0.0.1", "10.0.0.2", "10.0.0.3")
    alloc = _check_random_operations(seed, (), clients, (5000, 5031), 20_000)
    assert alloc.failed > 100  # the small space is really exhausted now and then


@pytest.mark.parametrize("seed", range(3))
def test_random_operations_pool_small_port_space(seed: int) -> None:
    pool = ips("192.0.2.1", "192.0.2.2", "192.0.2.3")
    clients = (*ips("10.0.0.1", "10.0.0.2"), pool[1])
    alloc = _check_random_operations(seed, pool, clients, (5000, 5015), 20_000)
    assert alloc.failed > 100


def test_random_operations_large_space_never_fail() -> None:
    pool = parse_pool(["192.0.2.0/28"])
    clients = tuple(ip2int(f"10.0.{i}.1") for i in range(20))
    rng = random.Random(9)
    alloc = PortAllocator(pool, reuse_delay=30.0)
    live: set[tuple[int, int]] = set()
    for step in range(40_000):
        now = step * 0.001
        if live and rng.random() < 0.4:
            pair = live.pop()
            alloc.release(pair, now)
            continue
        client, port, copy = rng.choice(clients), rng.randrange(32768, 61000), rng.randrange(50)
        got = alloc.allocate(client, port, copy, now)
        assert got is not None and got not in live
        live.add(got)
    assert alloc.failed == 0 and alloc.in_use() == len(live)


def test_100_copies_of_1000_sessions_from_4_clients_into_a_slash_24() -> None:
    pool = parse_pool(["198.18.10.0/24"])
    clients = ips("10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4")
    alloc = PortAllocator(pool)
    rng = random.Random(1)
    pairs = []
    for session in range(1000):
        client = clients[session % 4]
        port = rng.randrange(32768, 61000)  # real clients' ports may repeat across clients
        for copy in range(100):
            pair = alloc.allocate(client, port, copy, 0.0)
            assert pair is not None
            pairs.append(pair)
    assert len(pairs) == 100_000 and len(set(pairs)) == 100_000
    assert alloc.failed == 0 and alloc.in_use() == 100_000
    assert {ip for ip, _ in pairs} <= set(pool)
    for pair in pairs[::2]:
        alloc.release(pair, 1.0)
    assert alloc.in_use() == 50_000
