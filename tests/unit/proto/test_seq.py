"""Sequence arithmetic modulo 2**32, with the wrap-around cases that matter."""

import random

import pytest

from nfreplay.proto.seq import seq_add, seq_diff, seq_ge, seq_gt, seq_le, seq_lt, seq_max

TOP = 0xFFFFFFFF


@pytest.mark.parametrize(
    ("a", "n", "expected"),
    [
        (0, 1, 1),
        (TOP, 1, 0),
        (TOP - 9, 20, 10),
        (5, -10, TOP - 4),
        (0, -1, TOP),
        (0x12345678, 2**32, 0x12345678),
    ],
)
def test_seq_add_wraps(a: int, n: int, expected: int) -> None:
    assert seq_add(a, n) == expected


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        (5, 3, 2),
        (3, 5, -2),
        (0, TOP, 1),  # one step past the wrap
        (TOP, 0, -1),
        (10, TOP - 9, 20),
        (0x7FFFFFFF, 0, 2**31 - 1),
        (0x80000000, 0, -(2**31)),  # exactly half-way: the range is [-2**31, 2**31)
        (0, 0x80000000, -(2**31)),
    ],
)
def test_seq_diff_is_signed_mod_2_32(a: int, b: int, expected: int) -> None:
    assert seq_diff(a, b) == expected


@pytest.mark.parametrize(
    ("a", "b", "lt", "le", "gt", "ge"),
    [
        (1, 2, True, True, False, False),
        (2, 1, False, False, True, True),
        (7, 7, False, True, False, True),
        (TOP, 0, True, True, False, False),  # TOP comes just before 0
        (0, TOP, False, False, True, True),
        (TOP - 100, 100, True, True, False, False),
        (100, TOP - 100, False, False, True, True),
        (0, 0x7FFFFFFF, True, True, False, False),
        (0x7FFFFFFF, 0, False, False, True, True),
    ],
)
def test_comparisons_across_wrap(
    a: int, b: int, lt: bool, le: bool, gt: bool, ge: bool
) -> None:
    assert (seq_lt(a, b), seq_le(a, b), seq_gt(a, b), seq_ge(a, b)) == (lt, le, gt, ge)


def test_comparisons_agree_with_seq_diff() -> None:
    rng = random.Random(1982)
    for _ in range(5000):
        a = rng.choice([rng.randrange(2**32), TOP - rng.randrange(1000), rng.randrange(1000)])
        b = (a + rng.randrange(-(2**31), 2**31)) & TOP if rng.random() < 0.9 else a
        d = seq_diff(a, b)
        assert seq_lt(a, b) is (d < 0)
        assert seq_le(a, b) is (d <= 0)
        assert seq_gt(a, b) is (d > 0)
        assert seq_ge(a, b) is (d >= 0)
        assert seq_add(b, d) == a


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [(1, 2, 2), (2, 1, 2), (TOP, 3, 3), (3, TOP, 3), (9, 9, 9), (TOP - 5, TOP - 6, TOP - 5)],
)
def test_seq_max_across_wrap(a: int, b: int, expected: int) -> None:
    assert seq_max(a, b) == expected
