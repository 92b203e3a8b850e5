"""Log-once-per-interval gate: a failing camera or model must not flood the journal."""
import threading
import time
from typing import Callable, Dict, Tuple


class RateLimiter:
    """`allow(key)` is true at most once per `interval_s` per key; `suppressed(key)` counts the rest."""

    def __init__(self, interval_s: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval_s = interval_s
        self._clock = clock
        self._lock = threading.Lock()
        self._state: Dict[str, Tuple[float, int]] = {}

    def allow(self, key: str) -> Tuple[bool, int]:
        """Returns (allowed, how many were suppressed since the last allowed one)."""
        now = self._clock()
        with self._lock:
            last, skipped = self._state.get(key, (float("-inf"), 0))
            if now - last >= self.interval_s:
                self._state[key] = (now, 0)
                return True, skipped
            self._state[key] = (last, skipped + 1)
            return False, skipped + 1
