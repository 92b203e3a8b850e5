"""Bounded per-stream slots between the readers and the workers, picked fairly.

Readers `put()` and never block: a full slot loses its oldest frame (`replaced`), so a slow model
sees the newest picture instead of a growing backlog. A file read with `realtime: false` is the
exception: its reader `put(frame, wait=True)` waits for room instead (every sample point gets
inferred, the file is read as fast as the workers go), until `release(name)` or `close()`.
Workers `get()`: streams are served round-robin, one frame per stream per turn, so a busy 30 fps camera cannot starve a 1 fps one;
frames older than the stream's `max_frame_age_s` at pick time are skipped (`too_old`). Every frame
that leaves without being handed out is counted under a drop reason. A worker that gets with
`hold=True` holds the stream until it calls `done(name)`: no other worker gets a frame of it
meanwhile, so with several workers one stream's frames are still processed one at a time, in order
(its trackers and captions never see time go back), and an idle worker serves another stream
instead of waiting for that stream's lock with a frame going stale in its hands.

Counters are called outside the lock: `counters_for` belongs to the service and may take its own.
"""
import collections
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Deque, Dict, List, Optional, Set, Tuple

from daemon.counters import StreamCounters
from daemon.pipeline.frames import Frame

log = logging.getLogger(__name__)

WAIT_POLL_S = 0.5
"""A waiting put re-checks its slot at least this often (a missed wake-up costs no more)."""

Drops = List[Tuple[str, str, int]]
"""(stream, reason, count) to count once the lock is released."""


@dataclass
class _Slot:
    size: int
    max_age_s: float
    frames: Deque[Frame] = field(default_factory=collections.deque)
    released: bool = False


class Scheduler:
    """Thread-safe: any number of readers put, any number of workers get."""

    def __init__(self, counters_for: Callable[[str], StreamCounters],
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._counters_for = counters_for
        self._clock = clock
        self._cond = threading.Condition(threading.Lock())
        self._slots: Dict[str, _Slot] = {}
        self._order: List[str] = []
        self._cursor = 0
        self._closed = False
        self._held: Set[str] = set()

    def add_stream(self, name: str, slot_size: int = 1, max_frame_age_s: float = 2.0) -> None:
        """`max_frame_age_s` may be infinite (a file read with `realtime: false`: no frame is too old)."""
        if slot_size < 1 or max_frame_age_s <= 0:
            raise ValueError("stream %s: slot_size must be >= 1 and max_frame_age_s > 0" % name)
        with self._cond:
            if name in self._slots:
                raise ValueError("stream %s: already scheduled" % name)
            self._slots[name] = _Slot(slot_size, max_frame_age_s)
            self._order.append(name)

    def remove_stream(self, name: str) -> None:
        """Forget a stream; its queued frames are counted `shutdown`. Unknown names are ignored."""
        with self._cond:
            slot = self._slots.pop(name, None)
            if slot is None:
                return
            index = self._order.index(name)
            del self._order[index]
            if index < self._cursor:
                self._cursor -= 1
            pending = len(slot.frames)
            self._cond.notify_all()
        self._count([(name, "shutdown", pending)])

    def release(self, name: str) -> None:
        """The stream is stopping: a reader waiting for room gives its frame up (`shutdown`)."""
        with self._cond:
            slot = self._slots.get(name)
            if slot is not None:
                slot.released = True
            self._cond.notify_all()

    def put(self, frame: Frame, wait: bool = False) -> None:
        """Queue `frame` in its stream's slot; never blocks unless `wait` (then it waits for room,
        never replaces, and gives the frame up once the stream is released or removed)."""
        drops: Drops = []
        with self._cond:
            slot = self._slots.get(frame.stream)
            while wait and slot is not None and not (self._closed or slot.released) and len(slot.frames) >= slot.size:
                self._cond.wait(WAIT_POLL_S)
                slot = self._slots.get(frame.stream)
            if slot is None or self._closed or (wait and slot.released):
                drops.append((frame.stream, "shutdown", 1))
            else:
                while len(slot.frames) >= slot.size:
                    slot.frames.popleft()
                    drops.append((frame.stream, "replaced", 1))
                slot.frames.append(frame)
                self._cond.notify_all()  # workers and waiting readers share the condition
        self._count(drops)

    def get(self, timeout: float, hold: bool = False) -> Optional[Frame]:
        """The next frame, fairly across streams; None after `timeout` s or once closed. `hold`:
        the frame's stream is held (skipped for every getter) until `done(frame.stream)`."""
        deadline = self._clock() + max(0.0, timeout)
        drops: Drops = []
        try:
            with self._cond:
                while not self._closed:
                    frame = self._pick(drops)
                    if frame is not None:
                        if hold:
                            self._held.add(frame.stream)
                        return frame
                    left = deadline - self._clock()
                    if left <= 0:
                        return None
                    self._cond.wait(left)
                return None
        finally:
            self._count(drops)

    def _pick(self, drops: Drops) -> Optional[Frame]:
        """Round-robin from the cursor; drops stale frames on the way. Caller holds the lock."""
        now = self._clock()
        count = len(self._order)
        for step in range(count):
            index = (self._cursor + step) % count
            name = self._order[index]
            slot = self._slots[name]
            while slot.frames and now - slot.frames[0].mono_time > slot.max_age_s:
                slot.frames.popleft()
                drops.append((name, "too_old", 1))
            if slot.frames and name not in self._held:
                self._cursor = (index + 1) % count
                self._cond.notify_all()  # a reader may wait for this room
                return slot.frames.popleft()
        return None

    def done(self, name: str) -> None:
        """The worker holding `name` (get with hold=True) has finished its frame."""
        with self._cond:
            self._held.discard(name)
            self._cond.notify_all()

    def depth(self) -> int:
        with self._cond:
            return sum(len(slot.frames) for slot in self._slots.values())

    def depth_of(self, name: str) -> int:
        with self._cond:
            slot = self._slots.get(name)
            return len(slot.frames) if slot is not None else 0

    def streams(self) -> List[str]:
        with self._cond:
            return list(self._order)

    def close(self) -> None:
        """Wake every getter (they return None); queued frames are counted `shutdown`."""
        with self._cond:
            self._closed = True
            drops = [(name, "shutdown", len(slot.frames)) for name, slot in self._slots.items()]
            for slot in self._slots.values():
                slot.frames.clear()
            self._cond.notify_all()
        self._count(drops)

    def _count(self, drops: Drops) -> None:
        for stream, reason, n in drops:
            if n:
                try:
                    self._counters_for(stream).drop(reason, n)
                except Exception:  # a stream removed from the service mid-way has no counters
                    log.debug("no counters for stream %s (%s x%d)", stream, reason, n, extra={"stream": stream})
