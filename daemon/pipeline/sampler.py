"""Which decoded frames become work: a rate gate on stream time, then a scene-change gate.

`due()` is asked for every grabbed frame *before* it is converted to BGR, so frames between sample
points are never retrieved. Time is the frame's pts for files (a file read faster or slower than
real time still yields one frame per `every_s` of video) and the monotonic clock for live streams
(camera timestamps jump on reconnect and drift).

`changed()` is asked for the frames that were due, right after `due()`: a 64x36 grayscale thumbnail
is compared with the last frame that was actually *inferred* (a worker reports it with
`inferred(key)`); a mean absolute difference below `scene_change` (0..1 of full scale) means
nothing happened and the frame is not inferred, unless nothing was inferred for `max_skip_s`.
Comparing only with the last frame let through would lose a change whose frame was then dropped
(too old, replaced): the scene would look unchanged until `max_skip_s`. Comparing only with the
last inferred one lets a static scene through twice when its second sample comes while the first is
still queued or in inference. So a frame also counts as unchanged when it looks like the newest
frame let through that is still on its way: younger than `pending_s` (the stream's
max_frame_age_s: older ones were inferred or dropped by then) and not `discarded` by a worker.
A worker may also ask for a frame at a given task time (`force_at`: a caption or answer heartbeat
falls due then): from that time on the gate lets frames through until the worker asks again.
A file read with `realtime: false` asks `wait_settled()` before each gate decision, so the gate
sees what the worker made of the previous frame (its reference, hold_open, force_at) whatever the
machine's speed: the same file gives the same events.
One Sampler per stream: its reader thread calls everything but `inferred`, `discarded`,
`hold_open` and `force_at`, which workers call.
"""
import collections
import threading
import time
from typing import Callable, Deque, Hashable, Optional, Tuple

import cv2
import numpy as np

THUMB_SIZE = (64, 36)
"""(width, height) of the comparison thumbnail: 16:9, cheap, blind to sensor noise."""

PTS_EPSILON_S = 1e-3
"""Slack for pts rounding (a frame at 0.99999 s is the 1 s sample)."""

PENDING = 16
"""Thumbnails of let-through frames kept until a worker reports one inferred (bounded memory)."""


class Sampler:
    """Per-stream sampling decisions. `every_s=0` keeps every frame; `scene_change=0` disables the gate."""

    def __init__(self, every_s: float, scene_change: float = 0.0, max_skip_s: Optional[float] = None,
                 pending_s: float = 0.0, clock: Callable[[], float] = time.monotonic, lockstep: bool = False) -> None:
        """lockstep: track every frame let through, scene gate or not, so `wait_settled` holds the
        reader of a `realtime: false` file until the worker is done (one frame of it in flight:
        in order, whatever the number of workers)."""
        if every_s < 0 or scene_change < 0 or (max_skip_s is not None and max_skip_s < 0):
            raise ValueError("sampler settings must not be negative")
        self.every_s = every_s
        self.scene_change = scene_change
        self.max_skip_s = max_skip_s
        self.pending_s = pending_s
        self.lockstep = lockstep
        self._clock = clock
        self._next_due: Optional[float] = None
        self._last_t: Optional[float] = None
        self._now: float = 0.0
        self._lock = threading.Lock()
        self._settled = threading.Condition(self._lock)
        self._thumb: Optional[np.ndarray] = None
        self._thumb_t = 0.0
        # (key, thumbnail, stream time, monotonic time let through) of frames not yet reported inferred
        self._pending: Deque[Tuple[Hashable, Optional[np.ndarray], float, float]] = collections.deque(maxlen=PENDING)
        self._hold_open = False
        self._force_at: Optional[float] = None

    def reset(self) -> None:
        """Forget the schedule and the last image (after a reopen: the next frame is due and kept)."""
        self._next_due = None
        self._last_t = None
        self._forget_image()

    def _forget_image(self) -> None:
        with self._lock:
            self._thumb = None
            self._pending.clear()
            self._settled.notify_all()

    def wait_settled(self, timeout: float) -> bool:
        """True once every frame the gate let through was reported inferred or discarded (at once
        without a scene gate); False after `timeout` s."""
        with self._settled:
            return self._settled.wait_for(lambda: not self._pending, timeout)

    def due(self, pts_s: float, now_mono: Optional[float] = None, is_live: bool = False) -> bool:
        """True for one frame every `every_s` of stream time (files) or wall time (live)."""
        t = (self._clock() if now_mono is None else now_mono) if is_live else pts_s
        if self._last_t is not None and t < self._last_t - PTS_EPSILON_S:
            # Time went backwards: a file looped or a stream restarted its clock.
            self._next_due = None
            self._forget_image()
        self._last_t = t
        self._now = t
        if self._next_due is not None and t < self._next_due - PTS_EPSILON_S:
            return False
        # Stay on the grid (0, 1, 2 s...) unless we fell more than a period behind it.
        grid = t if self._next_due is None else self._next_due
        self._next_due = grid + self.every_s if t - grid < self.every_s else t + self.every_s
        return True

    def changed(self, image: np.ndarray, key: Hashable = None, task_time: Optional[float] = None) -> bool:
        """False when `image` looks like the last inferred frame (and that was inferred recently) or
        like the frame let through just before, still on its way to a worker. `key` names the frame
        (its index) for a later `inferred(key)` or `discarded(key)`; `task_time` is its time on the
        clock of `force_at`."""
        if self.scene_change <= 0:
            if self.lockstep:
                with self._lock:
                    self._pending.append((key, None, self._now, self._clock()))
            return True
        thumb = _thumbnail(image)
        now, mono = self._now, self._clock()
        with self._lock:
            reference, reference_t, hold_open = self._thumb, self._thumb_t, self._hold_open
            newest = self._pending[-1] if self._pending else None
            forced = self._force_at is not None and task_time is not None and task_time >= self._force_at
        if not (hold_open or forced):
            if newest is not None and mono - newest[3] < self.pending_s and self._same(thumb, newest[1]):
                return False
            overdue = self.max_skip_s is not None and now - reference_t >= self.max_skip_s
            if reference is not None and not overdue and self._same(thumb, reference):
                return False
        with self._lock:
            self._pending.append((key, thumb, now, mono))
        return True

    def _same(self, thumb: np.ndarray, reference: np.ndarray) -> bool:
        if reference.shape != thumb.shape:
            return False
        return float(np.mean(np.abs(thumb - reference))) / 255.0 < self.scene_change

    def hold_open(self, flag: bool) -> None:
        """While set, the gate lets every due frame through (a worker sets it while a prompt's
        phase is still settling: see daemon.pipeline.tracking.PromptTracker.settling)."""
        with self._lock:
            self._hold_open = flag

    def force_at(self, task_time: Optional[float]) -> None:
        """Let frames through from `task_time` on (a heartbeat is due then; the task clock of
        daemon.pipeline.frames.Frame.task_time); None: no such need."""
        with self._lock:
            self._force_at = task_time

    def inferred(self, key: Hashable) -> None:
        """A worker inferred the frame let through as `key`: it becomes the gate's reference
        (frames let through before it were dropped or inferred: forgotten)."""
        with self._lock:
            while self._pending:
                pending_key, thumb, t, _ = self._pending.popleft()
                if pending_key == key:
                    if thumb is not None:
                        self._thumb, self._thumb_t = thumb, t
                    break
            self._settled.notify_all()

    def discarded(self, key: Hashable) -> None:
        """A worker let the frame `key` go uninferred (nothing due, inference failed): it must not
        keep similar frames out."""
        with self._lock:
            self._pending = collections.deque((p for p in self._pending if p[0] != key), maxlen=PENDING)
            self._settled.notify_all()


def _thumbnail(image: np.ndarray) -> np.ndarray:
    small = cv2.resize(image, THUMB_SIZE, interpolation=cv2.INTER_AREA)
    if small.ndim == 3:
        small = cv2.cvtColor(small, cv2.COLOR_BGR2GRAY)
    return small.astype(np.int16)
