"""The two stand-ins `blipd scan` puts around the daemon's reader and worker: a one-frame handoff
between them (the reader waits until the worker is done, so a scan is deterministic and loses no
sample point) and a collector in the publisher's place (stamps `seq` per stream as it does)."""
import threading
import time
from typing import Any, Dict, List, Optional

from daemon.errors import DaemonError
from daemon.pipeline.frames import Frame
from daemon.publish.events import Event, Stamp


class Lockstep:
    """Reader -> worker, one frame at a time. The worker calling `next_frame` again means it has
    finished the frame before (the daemon's Worker loop does exactly that), so `put` returns only
    once the frame was processed. Replaces the scheduler: nothing is replaced or too old."""

    def __init__(self, frame_timeout_s: float = 300.0) -> None:
        self._cond = threading.Condition()
        self._pending: Optional[Frame] = None
        self._busy = False
        self._closed = False
        self._timeout_s = frame_timeout_s

    def put(self, frame: Frame) -> None:
        """Called by the reader (the supervisor's sink); DaemonError when the worker never finishes."""
        deadline = time.monotonic() + self._timeout_s
        with self._cond:
            if self._closed:
                raise DaemonError("stream %s: scan stopped" % frame.stream)
            self._pending = frame
            self._cond.notify_all()
            while (self._pending is not None or self._busy) and not self._closed:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise DaemonError("stream %s: frame %d not processed within %.0f s"
                                      % (frame.stream, frame.index, self._timeout_s))
                self._cond.wait(left)

    def next_frame(self, timeout: float) -> Optional[Frame]:
        """Called by the worker: marks its previous frame done, then waits for the next one."""
        with self._cond:
            self._busy = False
            self._cond.notify_all()
            if self._pending is None and not self._closed:
                self._cond.wait(timeout)
            frame, self._pending = self._pending, None
            self._busy = frame is not None
            return frame

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()


class Collector:
    """In the Publisher's place for a scan: the same `publish()` call, the same per-stream `seq`
    and JSON objects (Event.to_dict), kept in a list instead of sent. latency_ms is null: there
    is no capture time worth measuring from in a recorded file."""

    def __init__(self, boot: str, model: str, source: Optional[str] = None) -> None:
        self.boot = boot
        self.model = model
        self.source = source
        self._lock = threading.Lock()
        self._seq: Dict[str, int] = {}
        self.events: List[Dict[str, Any]] = []

    def begin(self) -> None:
        """A new file: seq restarts at 1 like a new daemon boot's."""
        with self._lock:
            self._seq.clear()
            self.events = []

    def publish(self, event: Event, jpeg: Optional[bytes] = None, mono_time: Optional[float] = None) -> bool:
        with self._lock:
            seq = self._seq.get(event.stream, 0) + 1
            self._seq[event.stream] = seq
            self.events.append(event.to_dict(Stamp(seq, self.boot, self.model, None, self.source)))
        return True
