"""The assist side's router: exact keys, parking of early SYN-ACK/RST, closed connections,
ageing by generations."""

from nfreplay.engine.routing import Router, route_key


def test_exact_keys_never_collide() -> None:
    r: Router[str] = Router()
    a = route_key(0x3E87C811, 40000, 0x3D87E9A0, 8080)
    # intercept's additive key would equal this one for a swapped port/ip contribution;
    # ours differs in any field.
    b = route_key(0x3E87C811 + 1, 40000 - 1, 0x3D87E9A0, 8080)
    r.add(a, "A", 0.0)
    assert r.lookup(a) == "A" and r.lookup(b) is None


def test_a_route_belongs_to_the_connection_that_announced_it_first() -> None:
    """Another connection (a rogue peer, or a tcpcopy that re-announces on its other
    connection) cannot take a live session's replies; its owner can announce it again."""
    r: Router[str] = Router()
    k = route_key(1, 2, 3, 4)
    assert r.add(k, "A", 0.0) == []
    assert r.add(k, "B", 1.0) is None and r.refused_owned == 1
    assert r.lookup(k) == "A" and r.add(k, "A", 2.0) == []
    r.close("A")  # a tcpcopy that reconnects: its sessions are announced afresh
    assert r.lookup(k) is None and r.add(k, "B", 3.0) == [] and r.lookup(k) == "B"


def test_routes_are_capped_in_total_and_per_connection() -> None:
    r: Router[str] = Router(max_routes=3, max_per_connection=2)
    assert r.add(1, "A", 0) == [] and r.add(2, "A", 0) == []
    assert r.add(3, "A", 0) is None and r.refused_full == 1  # A's share is full
    assert r.add(3, "B", 0) == [] and r.add(4, "B", 0) is None  # the total is full
    assert r.routes_of("A") == 2 and len(r) == 3
    r.close("A")
    assert len(r) == 1 and r.add(4, "B", 0) == []


def test_parked_records_are_delivered_in_order_when_the_route_appears() -> None:
    r: Router[str] = Router()
    k = route_key(1, 2, 3, 4)
    assert r.park(k, b"synack", 0.0) and r.park(k, b"rst", 0.1)
    assert r.parked_count == 2
    assert r.add(k, "A", 0.2) == [b"synack", b"rst"]
    assert r.parked_count == 0 and r.add(k, "A", 0.3) == []


def test_parked_records_expire() -> None:
    r: Router[str] = Router(park_timeout=30.0)
    r.park(route_key(1, 2, 3, 4), b"x", 0.0)
    r.park(route_key(5, 6, 7, 8), b"y", 20.0)
    r.expire(30.0)
    assert r.parked_expired == 1 and r.parked_count == 1
    assert r.add(route_key(1, 2, 3, 4), "A", 31.0) == []
    assert r.add(route_key(5, 6, 7, 8), "A", 31.0) == [b"y"]


def test_parking_is_bounded() -> None:
    r: Router[str] = Router(max_parked=2)
    assert r.park(1, b"a", 0) and r.park(2, b"b", 0)
    assert not r.park(3, b"c", 0)
    assert r.parked_overflow == 1


def test_routes_of_a_closed_connection_go_with_it() -> None:
    r: Router[str] = Router()
    k = route_key(1, 2, 3, 4)
    r.add(k, "A", 0.0)
    r.close("A")
    assert r.lookup(k) is None and len(r) == 0 and r.routes_of("A") == 0


def test_unused_routes_age_out_after_two_periods_used_ones_stay() -> None:
    r: Router[str] = Router(idle=10.0)
    used, idle = route_key(1, 1, 1, 1), route_key(2, 2, 2, 2)
    r.add(used, "A", 100.0)
    r.add(idle, "A", 100.0)
    r.expire(111.0)  # rotation: both now in the previous generation
    assert r.lookup(used) == "A"  # promoted back into the current one
    r.expire(122.0)
    assert r.lookup(used) == "A" and r.lookup(idle) is None
    assert len(r) == 1 and r.routes_of("A") == 1
