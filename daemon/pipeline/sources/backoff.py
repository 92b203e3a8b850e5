"""Reconnect delays: exponential growth with jitter, capped, reset after a healthy period.

Jitter choice: "equal jitter" by default, i.e. uniform(ceiling / 2, ceiling) with
ceiling = min(cap, initial * 2**n). Full jitter (uniform(0, ceiling)) spreads a fleet of cameras
slightly better after a switch reboots, but it can draw a near-zero delay at any attempt, so the
`retry_in_s` that operators (and tests) see does not visibly grow and a dead camera may be hit
twice in a row. Equal jitter keeps half of the spread and guarantees the delay at least doubles
its floor every attempt. `floor_ratio=0` gives full jitter.
"""
import random
from typing import Optional


class Backoff:
    """next_delay() for attempt 1, 2, ...: initial -> cap doubling, jittered; reset() after success."""

    def __init__(self, initial: float = 1.0, cap: float = 60.0, rng: Optional[random.Random] = None,
                 floor_ratio: float = 0.5) -> None:
        if initial <= 0 or cap < initial:
            raise ValueError("backoff needs 0 < initial <= cap (got %r, %r)" % (initial, cap))
        if not 0.0 <= floor_ratio <= 1.0:
            raise ValueError("floor_ratio must be within [0, 1] (got %r)" % floor_ratio)
        self.initial = initial
        self.cap = cap
        self.floor_ratio = floor_ratio
        self._rng = rng or random.Random()
        self._attempt = 0

    @property
    def attempt(self) -> int:
        """Delays handed out since the last reset."""
        return self._attempt

    def ceiling(self, attempt: int) -> float:
        """The un-jittered delay of `attempt` (1-based)."""
        exponent = min(max(attempt - 1, 0), 63)  # 2**63 * initial is far past any cap
        return min(self.cap, self.initial * (2.0 ** exponent))

    def next_delay(self) -> float:
        self._attempt += 1
        top = self.ceiling(self._attempt)
        return self._rng.uniform(self.floor_ratio * top, top)

    def reset(self) -> None:
        self._attempt = 0
