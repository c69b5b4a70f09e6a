"""The pure model: canonical rule form, plan builders, validation."""

from __future__ import annotations

from pathlib import Path

import pytest

from nfreplay.rules.model import (
    RTPROT_NFREPLAY,
    Plan,
    Route,
    Rule,
    SysctlCheck,
    assist_plan,
    canonical_match,
    owner_tag,
    save_quote,
    target_plan,
    PolicyRule,
    TARGET_TABLE,
)
from nfreplay.rules.savefile import parse_save
from tests.unit.rules.fixtures import capture

FIXTURES = Path(__file__).parent / "fixtures"
OWNER = "nfreplay:assist:lab1"


def _rule(match: tuple[str, ...], target: tuple[str, ...] = ("NFQUEUE", "--queue-num", "0"),
          chain: str = "PREROUTING", table: str = "raw", owner: str = OWNER) -> Rule:
    return Rule(table, chain, match, target, owner)


# -- canonical form ------------------------------------------------------------------------
def test_brief_example_is_stored_in_save_order() -> None:
    rule = _rule(("-p", "tcp", "-s", "198.18.0.3/32", "--sport", "80", "-d", "198.18.1.0/24"))
    assert rule.match == ("-s", "198.18.0.3/32", "-d", "198.18.1.0/24", "-p", "tcp",
                          "-m", "tcp", "--sport", "80")
    assert rule.spec() == [*rule.match, "-m", "comment", "--comment", OWNER,
                           "-j", "NFQUEUE", "--queue-num", "0"]


def test_save_line_is_what_iptables_nft_save_printed() -> None:
    rule = _rule(("-p", "tcp", "-s", "198.18.0.3", "--sport", "80", "-d", "198.18.1.0/24"))
    text = (FIXTURES / "iptables-nft-save.txt").read_text()
    assert rule.save_line() in text.splitlines()


@pytest.mark.parametrize("given, canonical", [
    (("-p", "6", "-d", "198.18.1.5/24"), ("-d", "198.18.1.0/24", "-p", "tcp")),
    (("--protocol", "TCP", "--source", "198.18.0.1"), ("-s", "198.18.0.1/32", "-p", "tcp")),
    (("-p", "tcp", "--dport", "443", "--sport", "1:1"),
     ("-p", "tcp", "-m", "tcp", "--sport", "1", "--dport", "443")),
    (("-p", "tcp", "-m", "tcp", "--destination-port", "80:"),
     ("-p", "tcp", "-m", "tcp", "--dport", "80:65535")),
    (("-p", "udp", "!", "--dport", "53", "-i", "eth0"),
     ("-i", "eth0", "-p", "udp", "-m", "udp", "!", "--dport", "53")),
    (("!", "-s", "198.18.0.0/15", "-p", "all"), ("!", "-s", "198.18.0.0/15")),
    (("-p", "tcp", "-m", "multiport", "--dports", "80,443"),
     ("-p", "tcp", "-m", "multiport", "--dports", "80,443")),
    (("-p", "tcp", "-m", "tcp", "--tcp-flags", "SYN,ACK", "SYN", "--sport", "9"),
     ("-p", "tcp", "-m", "tcp", "--sport", "9", "--tcp-flags", "SYN,ACK", "SYN")),
])
def test_canonical_match(given: tuple[str, ...], canonical: tuple[str, ...]) -> None:
    assert canonical_match(given) == canonical
    assert canonical_match(canonical) == canonical  # idempotent


@pytest.mark.parametrize("bad", [
    ("-s", "198.18.0.1,198.18.0.2"),      # iptables would make two rules of it
    ("-s", "example.com"),
    ("--sport", "80"),                    # no -p tcp: iptables refuses too
    ("-p", "icmp", "--sport", "80"),
    ("-p", "tcp", "--sport", "http"),     # iptables-save prints numbers
    ("-p", "tcp", "--sport", "70000"),
    ("-s", "198.18.0.1", "-s", "198.18.0.2"),
    ("--comment", "x"),
    ("-p", "tcp", "!"),
])
def test_canonical_match_rejects(bad: tuple[str, ...]) -> None:
    with pytest.raises(ValueError):
        canonical_match(bad)


def test_save_quote_matches_xtables_save_string() -> None:
    assert save_quote("operator") == "operator"
    assert save_quote("nfreplay:assist:lab1") == '"nfreplay:assist:lab1"'
    assert save_quote('a "b" \\c') == '"a \\"b\\" \\\\c"'


@pytest.mark.parametrize("fixture", ["iptables-nft-save.txt", "iptables-legacy-save.txt"])
def test_every_tagged_save_line_round_trips(fixture: str) -> None:
    """Real captured lines → Rule → save_line() gives the same line back, byte for byte."""
    text = (FIXTURES / fixture).read_text()
    rules = parse_save(text, "nfreplay:")
    built = [r for plan in capture.PLANS for r in plan.rules] + capture.EXTRA
    assert sorted(rules, key=repr) == sorted(built, key=repr)
    lines = set(text.splitlines())
    for rule in rules:
        assert rule.save_line() in lines
        assert Rule(rule.table, rule.chain, rule.match, rule.target, rule.owner) == rule


def test_rule_validation() -> None:
    with pytest.raises(ValueError):
        _rule(("-p", "tcp"), table="nope")
    with pytest.raises(ValueError):
        _rule(("-p", "tcp"), chain="has space")
    with pytest.raises(ValueError):
        _rule(("-p", "tcp"), target=())
    with pytest.raises(ValueError):
        _rule(("-p", "tcp"), owner="")


def test_describe_is_one_pasteable_line() -> None:
    rule = _rule(("-p", "tcp", "-s", "198.18.0.3", "--sport", "80", "-d", "198.18.1.0/24"))
    assert rule.describe() == (
        "iptables -t raw -A PREROUTING -s 198.18.0.3/32 -d 198.18.1.0/24 -p tcp -m tcp "
        "--sport 80 -m comment --comment nfreplay:assist:lab1 -j NFQUEUE --queue-num 0")
    assert Route("198.18.1.0/24", "198.18.0.2").describe() == (
        "ip route add 198.18.1.0/24 via 198.18.0.2 proto 156 table 254")
    assert SysctlCheck("net.ipv4.ip_forward", "0").describe() == "sysctl net.ipv4.ip_forward=0"
    assert Route("198.18.1.0/24", "", table=156, metric=7).describe() == (
        "ip route add blackhole 198.18.1.0/24 metric 7 proto 156 table 156")
    assert PolicyRule("198.18.1.7/24", 156, 156).describe() == (
        "ip rule add to 198.18.1.0/24 lookup 156 pref 156 proto 156")


def test_policy_rule_validation() -> None:
    for bad in (dict(dst="x", table=156, priority=156), dict(dst="198.18.1.0/24", table=255,
                priority=156), dict(dst="198.18.1.0/24", table=156, priority=0),
                dict(dst="198.18.1.0/24", table=156, priority=32766),
                dict(dst="198.18.1.0/24", table=156, priority=156, proto=3)):
        with pytest.raises(ValueError):
            PolicyRule(**bad)  # type: ignore[arg-type]


def test_route_validation_and_canonical_dst() -> None:
    assert Route("198.18.1.9/24", "198.18.0.2").dst == "198.18.1.0/24"
    assert Route("198.18.1.9/24", "198.18.0.2").proto == RTPROT_NFREPLAY == 156
    for bad in (dict(dst="x", via="198.18.0.2"), dict(dst="198.18.1.0/24", via="nope"),
                dict(dst="198.18.1.0/24", via="198.18.0.2", proto=2),
                dict(dst="198.18.1.0/24", via="198.18.0.2", table=0)):
        with pytest.raises(ValueError):
            Route(**bad)


# -- plan builders ---------------------------------------------------------------------------
def test_owner_tag() -> None:
    assert owner_tag("assist", "lab-1_a.b") == "nfreplay:assist:lab-1_a.b"
    for bad in ("", "a" * 33, "with space", "x:y", "é", "a/b"):
        with pytest.raises(ValueError):
            owner_tag("assist", bad)
    with pytest.raises(ValueError):
        owner_tag("Bad Role", "x")


def test_assist_plan_assistant_mode() -> None:
    plan = assist_plan("lab1", "198.18.0.3", 80, ["198.18.1.0/24", "198.18.2.0/24"],
                       "assistant", 3, fix_ip_forward=True)
    assert plan.owner == OWNER
    assert [(r.table, r.chain) for r in plan.rules] == [("raw", "PREROUTING")] * 2
    assert plan.rules[0] == _rule(("-p", "tcp", "-s", "198.18.0.3/32", "--sport", "80",
                                   "-d", "198.18.1.0/24"), ("NFQUEUE", "--queue-num", "3"))
    assert all("--queue-bypass" not in r.target for r in plan.rules)
    assert plan.routes == ()
    (check,) = plan.sysctls
    assert (check.key, check.want, check.fix) == ("net.ipv4.ip_forward", "0", True)
    assert check.hint


def test_assist_plan_balances_over_queues() -> None:
    """queues N > 1: one NFQUEUE rule per client network still, spreading over Q..Q+N-1."""
    plan = assist_plan("lab1", "198.18.0.3", 80, ["198.18.1.0/24", "198.18.2.0/24"],
                       "assistant", 3, passlist=["198.18.1.7"], queues=2)
    assert [r.target for r in plan.rules] == [
        ("ACCEPT",), ("NFQUEUE", "--queue-balance", "3:4"), ("NFQUEUE", "--queue-balance", "3:4")]
    one = assist_plan("lab1", "198.18.0.3", 80, ["198.18.1.0/24"], "colocated", 3, queues=1)
    assert one == assist_plan("lab1", "198.18.0.3", 80, ["198.18.1.0/24"], "colocated", 3)
    assert one.rules[0].target == ("NFQUEUE", "--queue-num", "3")
    top = assist_plan("lab1", "198.18.0.3", 80, ["198.18.1.0/24"], "colocated", 65534, queues=2)
    assert top.rules[0].target == ("NFQUEUE", "--queue-balance", "65534:65535")


def test_assist_plan_colocated_mode() -> None:
    plan = assist_plan("lab1", "198.18.0.3", 80, ["198.18.1.0/24"], "colocated", 0)
    assert [(r.table, r.chain) for r in plan.rules] == [("raw", "OUTPUT")]
    assert plan.sysctls == ()


def test_assist_plan_passlist_comes_first_in_order() -> None:
    plan = assist_plan("lab1", "198.18.0.3", 80, ["198.18.1.0/24", "198.18.2.0/24"],
                       "assistant", 0, passlist=["198.18.1.7", "198.18.2.8/32"])
    assert [r.target[0] for r in plan.rules] == ["ACCEPT", "ACCEPT", "NFQUEUE", "NFQUEUE"]
    assert [r.match[3] for r in plan.rules] == [
        "198.18.1.7/32", "198.18.2.8/32", "198.18.1.0/24", "198.18.2.0/24"]


@pytest.mark.parametrize("kwargs", [
    dict(instance="bad name"),
    dict(target_ip="198.18.0"),
    dict(target_port=0),
    dict(target_port=65536),
    dict(target_port=True),
    dict(clients=[]),
    dict(clients="198.18.1.0/24"),
    dict(clients=["nope"]),
    dict(mode="both"),
    dict(queue=-1),
    dict(queue=65536),
    dict(queues=0),
    dict(queues=65),
    dict(queues=True),
    dict(queue=65535, queues=2),
    dict(passlist=["x"]),
])
def test_assist_plan_validation(kwargs: dict[str, object]) -> None:
    args: dict[str, object] = dict(instance="lab1", target_ip="198.18.0.3", target_port=80,
                                   clients=["198.18.1.0/24"], mode="assistant", queue=0)
    args.update(kwargs)
    with pytest.raises(ValueError):
        assist_plan(**args)  # type: ignore[arg-type]


def test_target_plan_fails_closed() -> None:
    """Per client network, in its own table: a blackhole first, then the route via the
    assistant with a better metric; the policy rules that select the table come last, each
    followed by a blackhole rule for what the table does not route (flushed)."""
    plan = target_plan("lab1", ["198.18.1.0/24", "198.18.2.0/24", "198.18.1.0/24"], "198.18.0.2")
    t = TARGET_TABLE
    assert plan == Plan(owner="nfreplay:target:lab1", routes=(
        Route("198.18.1.0/24", "", table=t, metric=0xFFFFFFFF),
        Route("198.18.1.0/24", "198.18.0.2", table=t),
        Route("198.18.2.0/24", "", table=t, metric=0xFFFFFFFF),
        Route("198.18.2.0/24", "198.18.0.2", table=t),
    ), policy=(PolicyRule("198.18.1.0/24", t, 156), PolicyRule("198.18.1.0/24", 0, 157),
               PolicyRule("198.18.2.0/24", t, 156), PolicyRule("198.18.2.0/24", 0, 157)))
    assert plan.policy[1].describe() == (
        "ip rule add to 198.18.1.0/24 blackhole pref 157 proto 156")
    with pytest.raises(ValueError):
        target_plan("lab1", ["198.18.1.0/24"], "nope")
    with pytest.raises(ValueError):
        target_plan("lab1", [], "198.18.0.2")


def test_plan_refuses_foreign_rules() -> None:
    with pytest.raises(ValueError):
        Plan(owner="nfreplay:assist:other", rules=(_rule(("-p", "tcp")),))


# --- the target's tunnel -----------------------------------------------------------------------


def test_tunnel_plan_without_a_gateway_routes_replies_into_the_device() -> None:
    from nfreplay.rules.model import Tunnel, tunnel_device

    plan = target_plan("lab1", ["198.18.1.0/24"], "",
                       Tunnel("vxlan", ("198.18.0.2", "198.18.0.5", "198.18.0.2"), 36525))
    name = tunnel_device("lab1")
    assert len(name) <= 15 and name == tunnel_device("lab1") != tunnel_device("lab2")
    (link,) = plan.links
    assert link.describe() == (f"ip link add {name} address 02:6e:66:72:00:01 type vxlan id "
                               "5129810 dstport 36525 nolearning")
    assert link.owner == "nfreplay:target:lab1"
    # Peers accepted once each, in order, ahead of the drop of everything else on the port.
    assert [(r.chain, r.match, r.target) for r in plan.rules] == [
        ("PREROUTING", ("-s", "198.18.0.2/32", "-p", "udp", "-m", "udp", "--dport", "36525"),
         ("ACCEPT",)),
        ("PREROUTING", ("-s", "198.18.0.5/32", "-p", "udp", "-m", "udp", "--dport", "36525"),
         ("ACCEPT",)),
        ("PREROUTING", ("-p", "udp", "-m", "udp", "--dport", "36525"), ("DROP",))]
    assert plan.routes == (Route("198.18.1.0/24", "", table=TARGET_TABLE, metric=0xFFFFFFFF),
                           Route("198.18.1.0/24", "", table=TARGET_TABLE, dev=name))
    assert plan.routes[1].describe() == f"ip route add 198.18.1.0/24 dev {name} proto 156 table 156"
    assert plan.sysctls == ()  # the route back to the clients is the tunnel: strict passes


@pytest.mark.parametrize(("kind", "peers", "message"), [
    ("fou", ("198.18.0.2",), "a 'fou' device is yours to create"),
    ("vxlan", (), "at least one online host"),
    ("vxlan", ("198.18.0",), "tunnel peer is not an IPv4 address"),
    ("vxlan", ("198.18.1.7",), "198.18.1.0/24 holds the tunnel peer 198.18.1.7"),
])
def test_tunnel_plan_refuses_what_it_cannot_build(kind: str, peers: tuple[str, ...],
                                                  message: str) -> None:
    from nfreplay.rules.model import Tunnel

    with pytest.raises(ValueError, match=message):
        target_plan("lab1", ["198.18.1.0/24"], "", Tunnel(kind, peers, 36525))


def test_a_route_has_a_gateway_or_a_device() -> None:
    with pytest.raises(ValueError):
        Route("198.18.1.0/24", "198.18.0.4", dev="eth0")
    with pytest.raises(ValueError):
        Route("198.18.1.0/24", "", dev="a-name-far-too-long")
    assert not Route("198.18.1.0/24", "", dev="eth0").blackhole
