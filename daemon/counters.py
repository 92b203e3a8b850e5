"""Per-stream counters: every decoded frame ends either inferred or under a named drop reason.

One `StreamCounters` per stream, shared by its reader, the scheduler, the workers and the
publisher; increments take a lock so any thread may count. Stats events and Prometheus metrics
read `snapshot()`.
"""
import threading
from typing import Dict

DROP_REASONS = ("replaced", "too_old", "unchanged", "not_sampled", "not_due", "shutdown")
"""replaced: a newer frame took its slot; too_old: older than max_frame_age_s when a worker got to it;
unchanged: the scene-change gate found it identical to the last inferred one; not_sampled: between
sample points (never retrieved from the decoder); not_due: sampled but no task was due on it
(e.g. captions every 5 s, no prompts); shutdown: still queued when the stream stopped."""


TASK_FAILURES = ("failed_caption", "failed_match", "failed_answer")
"""Per task: inference calls of that task that failed (the frame itself counts `inferred` when
another task of it succeeded, `failed` when every due task failed or anything after them did)."""

SOURCE_COUNTERS = ("pts_discontinuities", "undecodable")
"""pts_discontinuities: times a file's timestamps went back (or leapt ahead) and a new segment of
the sampling grid began; undecodable: damaged packets (PyAV) or frame positions (OpenCV) a decoder
skipped to go on with the rest of a file."""


class StreamCounters:
    """Thread-safe counters of one stream."""

    def __init__(self, stream: str) -> None:
        self.stream = stream
        self._lock = threading.Lock()
        self._values: Dict[str, int] = {
            "decoded": 0,
            "sampled": 0,
            "inferred": 0,
            "failed": 0,
            "published": 0,
            "publish_dropped": 0,
            "subscriber_overflows": 0,
            "reconnects": 0,
            "failed_caption": 0,
            "failed_match": 0,
            "failed_answer": 0,
            "pts_discontinuities": 0,
            "undecodable": 0,
        }
        self._dropped: Dict[str, int] = {reason: 0 for reason in DROP_REASONS}

    def add(self, name: str, n: int = 1) -> None:
        with self._lock:
            self._values[name] = self._values.get(name, 0) + n

    def drop(self, reason: str, n: int = 1) -> None:
        if reason not in self._dropped:
            raise ValueError("unknown drop reason %r" % reason)
        with self._lock:
            self._dropped[reason] += n

    def get(self, name: str) -> int:
        with self._lock:
            return self._values.get(name, 0)

    def snapshot(self) -> Dict[str, object]:
        """A consistent copy: {counter: n, ..., "dropped": {reason: n}}."""
        with self._lock:
            out: Dict[str, object] = dict(self._values)
            out["dropped"] = dict(self._dropped)
            return out
