"""Is inference making progress? Decides whether the service may ping the systemd watchdog.

(Notifier and Metrics live in daemon.ops.notify and daemon.ops.metrics; they are re-exported here.)

A wedged worker (a driver call that never returns) keeps the process alive but useless; withholding
WATCHDOG=1 then lets systemd restart us. Idle is healthy: no frame waiting means nothing is due.
"""
import contextlib
import logging
import threading
import time
from typing import Callable, Dict, Iterator, Optional

from daemon.ops.metrics import Metrics, MetricsServer
from daemon.ops.notify import Notifier

__all__ = ["Metrics", "MetricsServer", "Notifier", "ProgressMonitor", "WatchdogPinger"]

log = logging.getLogger(__name__)


class ProgressMonitor:
    """Workers report work_started()/work_done() (keyed by thread) or beat(); the main thread asks
    healthy().

    waiting: returns True while some frame waits for a worker (e.g. the scheduler's depth > 0).
    """

    def __init__(self, stall_after_s: float, waiting: Optional[Callable[[], bool]] = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.stall_after_s = stall_after_s
        self._waiting = waiting
        self._clock = clock
        self._lock = threading.Lock()
        self._in_flight: Dict[int, float] = {}
        self._last_progress = clock()

    def work_started(self) -> None:
        with self._lock:
            self._in_flight[threading.get_ident()] = self._clock()

    def work_done(self) -> None:
        with self._lock:
            self._in_flight.pop(threading.get_ident(), None)
            self._last_progress = self._clock()

    def beat(self) -> None:
        with self._lock:
            self._last_progress = self._clock()

    @contextlib.contextmanager
    def working(self) -> Iterator[None]:
        """`with monitor.working(): run_tasks(frame)`; done even when the tasks raise."""
        self.work_started()
        try:
            yield
        finally:
            self.work_done()

    def problem(self, now: Optional[float] = None, waiting: Optional[bool] = None) -> Optional[str]:
        """Why we are unhealthy, or None when healthy. `waiting` overrides the constructor's callable."""
        now = self._clock() if now is None else now
        with self._lock:
            oldest = min(self._in_flight.values(), default=None)
            idle_for = now - self._last_progress
        if oldest is not None and now - oldest > self.stall_after_s:
            return "a frame has been in inference for %.0f s" % (now - oldest)
        if oldest is not None or idle_for <= self.stall_after_s:
            return None
        if waiting is None:
            waiting = self._waiting() if self._waiting is not None else False
        if waiting:
            return "frames waiting but no inference for %.0f s" % idle_for
        return None

    def healthy(self, now: Optional[float] = None, waiting: Optional[bool] = None) -> bool:
        return self.problem(now, waiting) is None


class WatchdogPinger:
    """The one path to WATCHDOG=1: `tick()` from the service's main loop sends a ping every
    `interval_s` (half of systemd's WATCHDOG_USEC, as sd_watchdog_enabled(3) advises) and only
    while the monitor finds inference progressing (or nothing waiting). No watchdog configured
    (no WATCHDOG_USEC, or one meant for another PID) means no pings at all.
    """

    def __init__(self, notifier: Notifier, monitor: ProgressMonitor, interval_s: Optional[float] = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        """interval_s: seconds between pings; None = `notifier.watchdog_interval()`."""
        self._notifier = notifier
        self._monitor = monitor
        self.interval_s = notifier.watchdog_interval() if interval_s is None else interval_s
        self._clock = clock
        self._last_ping: Optional[float] = None
        self._withheld = False

    def tick(self, now: Optional[float] = None) -> bool:
        """True if WATCHDOG=1 was sent: a watchdog is set, a ping is due and inference progresses."""
        if not self.interval_s:
            return False
        now = self._clock() if now is None else now
        if self._last_ping is not None and now - self._last_ping < self.interval_s:
            return False
        problem = self._monitor.problem(now)
        if problem is not None:
            if not self._withheld:
                log.error("watchdog: not pinging systemd: %s", problem)
                self._notifier.status("unhealthy: " + problem)
            self._withheld = True
            return False
        if self._withheld:
            log.warning("watchdog: inference progressing again")
            self._withheld = False
        self._last_ping = now
        return self._notifier.watchdog()
