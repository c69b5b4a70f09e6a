"""Session sampling (``--percent P``): replay a uniform, sticky share of the clients, optionally
ramped up from 1 % at a fixed rate.

Invariants:

* The decision for a client ``ip:port`` is a pure function of the seed, ``ip``, ``port`` and the
  percentage in force: a keyed BLAKE2b hash of the six address bytes, reduced to a bucket in
  ``[0, 10000)``; the session is kept iff ``bucket < percent * 100``. So 0.01 % is the finest
  step, the same ``ip:port`` gets the same answer for the same percentage, and a bucket kept at
  some percentage is kept at every higher one.
* The percentage in force only grows (``percent_at``), so during a ramp a client kept once is
  kept for every later session too. A client dropped at 5 % may be kept at 20 %: decisions are
  per session start. The caller asks once, at a new session, and remembers the answer for the
  session's life, so a session is never cut in half by the ramp.
* No clock inside: the caller passes ``now`` (any monotonic seconds). The ramp starts at the
  first call to ``keep`` or ``percent_at``.

Why not tcpcopy's ``-r`` hash: it adds the two bytes of a 16-bit sum (``(k >> 8) + (k & 0xFF)``,
values 0-510 with a triangular distribution) and takes it modulo 100, so its buckets are not
equally likely; the tests measure this.
"""

from __future__ import annotations

import math
from hashlib import blake2b
from struct import Struct
from struct import error as StructError

__all__ = ["DEFAULT_SEED", "BUCKETS", "Sampler"]

#: Key of the hash when none is given. A fixed default makes the sample reproducible across
#: restarts (the same clients are sampled again); give different seeds to draw disjoint-ish
#: samples on several instances.
DEFAULT_SEED = b"nfreplay-sampling"
#: Number of hash buckets: percentages are honoured to 0.01 point.
BUCKETS = 10000

_KEY = Struct("!IH")


class Sampler:
    """Decides which new client sessions are replayed.

    ``percent`` is the share of client ``ip:port`` pairs to keep, in ``(0, 100]``. With
    ``ramp_per_second``, the percentage in force starts at ``min(1, percent)`` at the first call
    and grows by that many points per second until ``percent`` (tcpcopy's ``-g`` is a ramp of 1).
    ``seed`` (at most 64 bytes) keys the hash; the default is ``DEFAULT_SEED``.

    Raises ``ValueError`` for a percent outside ``(0, 100]``, a ramp that is not positive, or a
    seed longer than 64 bytes; ``TypeError`` for values of the wrong type.
    """

    __slots__ = ("percent", "ramp_per_second", "_hasher", "_start", "_t0", "_limit")

    def __init__(
        self, percent: float, *, ramp_per_second: float | None = None, seed: bytes | None = None
    ) -> None:
        if isinstance(percent, bool) or not isinstance(percent, (int, float)):
            raise TypeError(f"Sampler: percent must be a number, not {type(percent).__name__}")
        if not 0 < percent <= 100:  # also rejects NaN
            raise ValueError(f"Sampler: percent {percent} is not in (0, 100]")
        if ramp_per_second is not None:
            if isinstance(ramp_per_second, bool) or not isinstance(ramp_per_second, (int, float)):
                raise TypeError("Sampler: ramp_per_second must be a number")
            if not 0 < ramp_per_second < math.inf:
                raise ValueError(f"Sampler: ramp_per_second {ramp_per_second} must be > 0")
        if seed is None:
            seed = DEFAULT_SEED
        elif not isinstance(seed, bytes):
            raise TypeError(f"Sampler: seed must be bytes, not {type(seed).__name__}")
        if len(seed) > 64:
            raise ValueError(f"Sampler: seed of {len(seed)} bytes exceeds 64 (BLAKE2b key)")
        self.percent = float(percent)
        self.ramp_per_second = None if ramp_per_second is None else float(ramp_per_second)
        # Copying a keyed state is cheaper than keying a new one per call: the key is a full
        # compressed block.
        self._hasher = blake2b(digest_size=8, key=seed)
        self._start = min(1.0, self.percent)
        self._t0: float | None = None
        # Bucket bound for the full percentage; percent=100 keeps all without hashing.
        self._limit = self.percent * (BUCKETS / 100)

    def bucket(self, client_ip: int, client_port: int) -> int:
        """The hash bucket, in ``[0, BUCKETS)``, of ``client_ip:client_port`` under this seed.

        Raises ``ValueError`` if the ip or port is out of range.
        """
        h = self._hasher.copy()
        try:
            h.update(_KEY.pack(client_ip, client_port))
        except StructError:
            raise ValueError(f"Sampler: bad client {client_ip}:{client_port}") from None
        # 2^64 mod 10^4 leaves a bias of about 10^-15 per bucket: irrelevant.
        return int.from_bytes(h.digest(), "big") % BUCKETS

    def percent_at(self, now: float) -> float:
        """The percentage in force at ``now``. The first call (here or in ``keep``) starts the
        ramp; a ``now`` before that start counts as the start."""
        if self.ramp_per_second is None:
            return self.percent
        if self._t0 is None:
            self._t0 = now
        elapsed = now - self._t0
        if elapsed <= 0:
            return self._start
        return min(self.percent, self._start + self.ramp_per_second * elapsed)

    def keep(self, client_ip: int, client_port: int, now: float) -> bool:
        """True if the new session from ``client_ip:client_port`` is to be replayed.

        Call it once per new session and keep the answer for the session (see the module
        notes). ``now`` is the caller's clock in seconds. Raises ``ValueError`` if the ip or
        port is out of range.
        """
        if self.ramp_per_second is None:
            limit = self._limit
            if limit >= BUCKETS:
                return True
        else:
            limit = self.percent_at(now) * (BUCKETS / 100)
        h = self._hasher.copy()
        try:
            h.update(_KEY.pack(client_ip, client_port))
        except StructError:
            raise ValueError(f"Sampler: bad client {client_ip}:{client_port}") from None
        return int.from_bytes(h.digest(), "big") % BUCKETS < limit
