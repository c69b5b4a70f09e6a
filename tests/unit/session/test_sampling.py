"""Session sampling: uniform and sticky per client ip:port, the ramp, argument checks, and why
tcpcopy's -r hash is not used."""

from __future__ import annotations

import math
import random
import struct

import pytest

from nfreplay.session.sampling import BUCKETS, DEFAULT_SEED, Sampler

# chi2.ppf(0.999, 99): the statistic that 100 equally likely buckets exceed with p = 0.001
# (tables give 148.230; the Wilson-Hilferty approximation, checked below, 148.3).
CHI2_CRIT_99_DOF = 148.23
SEED = b"nfreplay tests"


def random_keys(n: int, seed: int = 1) -> list[tuple[int, int]]:
    rng = random.Random(seed)
    return [(rng.getrandbits(32), rng.randrange(1024, 65536)) for _ in range(n)]


def sequential_keys() -> list[tuple[int, int]]:
    """What real traffic looks like: few client IPs, ports handed out in sequence."""
    return [(0x0A000001 + i, port) for i in range(4) for port in range(32768, 57768)]


def chi_square(counts: list[int]) -> float:
    expected = sum(counts) / len(counts)
    return sum((c - expected) ** 2 / expected for c in counts)


def tcpcopy_bucket(ip: int, port: int) -> int:
    """tcpcopy -r (tc_session.c:2169-2176) on a little-endian host: the network-order fields
    are added as host-order integers, then the two bytes of the 16-bit sum are added."""
    saddr_raw: int = struct.unpack("<I", struct.pack("!I", ip))[0]
    sport_raw: int = struct.unpack("<H", struct.pack("!H", port))[0]
    k = (sport_raw + saddr_raw) & 0xFFFF
    return ((k >> 8) + (k & 0xFF)) % 100


def test_critical_value_matches_wilson_hilferty() -> None:
    k, z = 99, 3.090232  # z = Phi^-1(0.999)
    approx = k * (1 - 2 / (9 * k) + z * math.sqrt(2 / (9 * k))) ** 3
    assert abs(approx - CHI2_CRIT_99_DOF) < 0.2


def test_tcpcopy_reference_example() -> None:
    # The reference's own worked example: 62.135.200.17:40000 -> 417 -> 17.
    assert tcpcopy_bucket(0x3E87C811, 40000) == 17


# --- uniformity -----------------------------------------------------------------------------------


@pytest.mark.parametrize("keys", [random_keys(100_000), sequential_keys()], ids=["random", "seq"])
def test_kept_fraction_is_the_percentage(keys: list[tuple[int, int]]) -> None:
    sampler = Sampler(30, seed=SEED)
    kept = sum(sampler.keep(ip, port, 0.0) for ip, port in keys)
    assert abs(kept / len(keys) - 0.30) <= 0.01


@pytest.mark.parametrize("percent", [0.5, 5, 50, 99.5])
def test_kept_fraction_at_other_percentages(percent: float) -> None:
    sampler = Sampler(percent)
    keys = random_keys(40_000, seed=2)
    kept = sum(sampler.keep(ip, port, 0.0) for ip, port in keys) / len(keys)
    # 4 standard deviations of a binomial proportion.
    p = percent / 100
    assert abs(kept - p) <= 4 * math.sqrt(p * (1 - p) / len(keys))


def test_hash_buckets_are_uniform_chi_square() -> None:
    sampler = Sampler(30, seed=SEED)
    counts = [0] * 100
    for ip, port in random_keys(100_000):
        counts[sampler.bucket(ip, port) * 100 // BUCKETS] += 1
    assert chi_square(counts) < CHI2_CRIT_99_DOF


def test_hash_buckets_are_uniform_for_sequential_ports() -> None:
    sampler = Sampler(30, seed=SEED)
    counts = [0] * 100
    for ip, port in sequential_keys():
        counts[sampler.bucket(ip, port) * 100 // BUCKETS] += 1
    assert chi_square(counts) < CHI2_CRIT_99_DOF


def test_tcpcopy_hash_is_not_uniform() -> None:
    """Documents why nfreplay does not reuse tcpcopy's -r hash: over the very keys on which
    ours passes, its 100 buckets fail the same chi-square test, and over all 65536 possible
    16-bit sums its buckets are up to 7 % apart in probability (bucket 55 vs. bucket 0)."""
    counts = [0] * 100
    for ip, port in random_keys(100_000):
        counts[tcpcopy_bucket(ip, port)] += 1
    assert chi_square(counts) > CHI2_CRIT_99_DOF
    exact = [0] * 100
    for k in range(65536):
        exact[((k >> 8) + (k & 0xFF)) % 100] += 1
    assert (min(exact), max(exact)) == (636, 680)  # 655.36 each if it were uniform


# --- stickiness -----------------------------------------------------------------------------------


def test_decision_is_a_pure_function_of_seed_ip_port_and_percentage() -> None:
    keys = random_keys(2000, seed=3)
    a, b = Sampler(30, seed=SEED), Sampler(30, seed=SEED)
    first = [a.keep(ip, port, 0.0) for ip, port in keys]
    assert [a.keep(ip, port, 1e6) for ip, port in keys] == first
    assert [b.keep(ip, port, 5.0) for ip, port in reversed(keys)] == first[::-1]
    other = [Sampler(30, seed=b"other").keep(ip, port, 0.0) for ip, port in keys]
    assert other != first  # the seed matters
    same = sum(x == y for x, y in zip(first, other, strict=True))
    assert same < 0.7 * len(keys)  # and is not a shift
    assert Sampler(30).bucket(1, 2) == Sampler(30, seed=DEFAULT_SEED).bucket(1, 2)


def test_bucket_depends_on_port_and_ip() -> None:
    s = Sampler(50)
    assert len({s.bucket(0x0A000001, p) for p in range(1000, 1100)}) > 90
    assert len({s.bucket(0x0A000000 + i, 1000) for i in range(100)}) > 90


def test_a_key_kept_at_some_percentage_is_kept_at_every_higher_one() -> None:
    keys = random_keys(3000, seed=4)
    previous: set[tuple[int, int]] = set()
    for percent in (1, 5, 20, 50, 80, 100):
        s = Sampler(percent, seed=SEED)
        kept = {key for key in keys if s.keep(*key, 0.0)}
        assert previous <= kept
        previous = kept
    assert len(previous) == len(keys)


def test_percent_100_keeps_everything_without_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    s = Sampler(100)

    def no_hashing() -> None:
        raise AssertionError("hashed")

    monkeypatch.setattr(s, "_hasher", type("H", (), {"copy": staticmethod(no_hashing)})())
    assert all(s.keep(ip, port, 0.0) for ip, port in random_keys(1000))


# --- the ramp -------------------------------------------------------------------------------------


def test_ramp_starts_at_one_percent_and_grows_until_the_target() -> None:
    s = Sampler(30, ramp_per_second=1.0)
    assert s.percent_at(100.0) == 1.0  # the first call starts the ramp
    assert s.percent_at(99.0) == 1.0  # a clock before the start counts as the start
    assert s.percent_at(110.0) == 11.0
    assert s.percent_at(128.5) == 29.5
    assert s.percent_at(129.0) == 30.0
    assert s.percent_at(1000.0) == 30.0


def test_ramp_rate_and_small_targets() -> None:
    s = Sampler(50, ramp_per_second=4.0)
    assert s.percent_at(0.0) == 1.0
    assert s.percent_at(2.0) == 9.0
    assert s.percent_at(20.0) == 50.0
    tiny = Sampler(0.5, ramp_per_second=1.0)
    assert tiny.percent_at(0.0) == tiny.percent_at(1000.0) == 0.5
    assert Sampler(30).percent_at(0.0) == 30.0  # no ramp


def test_ramp_starts_at_the_first_keep() -> None:
    keys = random_keys(20_000, seed=5)
    s = Sampler(30, ramp_per_second=1.0, seed=SEED)
    assert s.keep(*keys[0], 50.0) in (True, False)
    early = sum(s.keep(ip, port, 50.0) for ip, port in keys) / len(keys)
    later = sum(s.keep(ip, port, 59.0) for ip, port in keys) / len(keys)
    done = sum(s.keep(ip, port, 500.0) for ip, port in keys) / len(keys)
    assert abs(early - 0.01) < 0.004
    assert abs(later - 0.10) < 0.01
    assert abs(done - 0.30) < 0.015


def test_during_the_ramp_kept_keys_stay_kept() -> None:
    keys = random_keys(5000, seed=6)
    s = Sampler(40, ramp_per_second=2.0, seed=SEED)
    kept_before: set[tuple[int, int]] = set()
    for t in range(0, 30, 3):
        kept = {key for key in keys if s.keep(*key, float(t))}
        assert kept_before <= kept
        kept_before = kept


# --- arguments ------------------------------------------------------------------------------------


@pytest.mark.parametrize("percent", [0, -1, 100.01, 1000, math.nan, math.inf, -math.inf])
def test_bad_percent_is_a_value_error(percent: float) -> None:
    with pytest.raises(ValueError, match="percent"):
        Sampler(percent)


@pytest.mark.parametrize("percent", ["30", None, True, [30]])
def test_percent_of_the_wrong_type_is_a_type_error(percent: object) -> None:
    with pytest.raises(TypeError):
        Sampler(percent)  # type: ignore[arg-type]


@pytest.mark.parametrize("ramp", [0, -1, math.nan, math.inf])
def test_bad_ramp_is_a_value_error(ramp: float) -> None:
    with pytest.raises(ValueError, match="ramp"):
        Sampler(30, ramp_per_second=ramp)


def test_bad_seed() -> None:
    with pytest.raises(TypeError):
        Sampler(30, seed="text")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="64"):
        Sampler(30, seed=bytes(65))
    Sampler(30, seed=bytes(64))
    Sampler(30, seed=b"")


def test_edge_percentages_are_accepted() -> None:
    assert Sampler(100).keep(1, 1, 0.0)
    s = Sampler(0.01)
    assert sum(s.keep(ip, port, 0.0) for ip, port in random_keys(50_000, seed=8)) < 20


def test_out_of_range_addresses_are_rejected() -> None:
    s = Sampler(30)
    with pytest.raises(ValueError, match="bad client"):
        s.keep(2**32, 80, 0.0)
    with pytest.raises(ValueError, match="bad client"):
        s.keep(1, 65536, 0.0)
    with pytest.raises(ValueError, match="bad client"):
        s.bucket(-1, 80)
