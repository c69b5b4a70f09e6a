"""TCP sequence-number arithmetic modulo 2**32 (RFC 793 §3.3, RFC 1982 serial arithmetic).

Sequence numbers are plain ``int`` in ``[0, 2**32)``. Comparisons are only meaningful for numbers
less than 2**31 apart, which every live TCP window guarantees. For two numbers exactly 2**31 apart,
each one is "less than" the other (``seq_diff`` returns ``-2**31`` both ways); Linux's ``before()``
behaves the same, and it never happens inside a real window.

These run several times per packet, so they use literal constants and no helper calls.
"""

__all__ = ["seq_add", "seq_diff", "seq_lt", "seq_le", "seq_gt", "seq_ge", "seq_max"]


def seq_add(a: int, n: int) -> int:
    """Return ``a + n`` modulo 2**32 (``n`` may be negative)."""
    return (a + n) & 0xFFFFFFFF


def seq_diff(a: int, b: int) -> int:
    """Return the signed distance ``a - b``, in ``[-2**31, 2**31)``."""
    return ((a - b + 0x80000000) & 0xFFFFFFFF) - 0x80000000


def seq_lt(a: int, b: int) -> bool:
    """``a`` comes strictly before ``b``."""
    # The distance a-b, taken mod 2**32, has its top bit set exactly when it is negative.
    return ((a - b) & 0xFFFFFFFF) >= 0x80000000


def seq_le(a: int, b: int) -> bool:
    """``a`` comes before ``b`` or equals it."""
    return not 0 < ((a - b) & 0xFFFFFFFF) < 0x80000000


def seq_gt(a: int, b: int) -> bool:
    """``a`` comes strictly after ``b``."""
    return 0 < ((a - b) & 0xFFFFFFFF) < 0x80000000


def seq_ge(a: int, b: int) -> bool:
    """``a`` comes after ``b`` or equals it."""
    return ((a - b) & 0xFFFFFFFF) < 0x80000000


def seq_max(a: int, b: int) -> int:
    """The later of ``a`` and ``b`` (``a`` when equal)."""
    return a if ((a - b) & 0xFFFFFFFF) < 0x80000000 else b
