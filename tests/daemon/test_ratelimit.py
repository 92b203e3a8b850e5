"""The log-once-per-interval gate: first message through, the rest counted until the interval passes."""
import threading

from daemon.ops.ratelimit import RateLimiter


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_once_per_interval_per_key_with_the_suppressed_count() -> None:
    clock = FakeClock()
    gate = RateLimiter(60.0, clock=clock)
    assert gate.allow("gate") == (True, 0)
    assert gate.allow("gate") == (False, 1)
    assert gate.allow("yard") == (True, 0)  # keys are independent
    clock.now += 59.9
    assert gate.allow("gate") == (False, 2)
    clock.now += 0.1
    assert gate.allow("gate") == (True, 2)  # says how many it hid since the last one
    assert gate.allow("gate") == (False, 1)  # and starts counting again


def test_the_first_call_is_allowed_whatever_the_clock() -> None:
    assert RateLimiter(60.0, clock=lambda: 0.0).allow("k") == (True, 0)


def test_threads_share_one_gate() -> None:
    gate = RateLimiter(3600.0)
    allowed = []

    def hammer() -> None:
        for _ in range(1000):
            allowed.append(gate.allow("k")[0])

    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert allowed.count(True) == 1 and len(allowed) == 4000
    assert gate.allow("k") == (False, 4000)
