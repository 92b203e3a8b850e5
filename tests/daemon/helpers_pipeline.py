"""Real pipeline parts (StreamContext, Emitter, Sampler, counters) around a scripted engine and a
publisher that records, for worker and emit tests."""
import threading
from typing import Any, Dict, List, Mapping, Optional, Set, Tuple

import numpy as np

from blip.engine import EngineResult
from daemon.config.config import ResolvedStream, Settings
from daemon.counters import StreamCounters
from daemon.pipeline.emit import Emitter
from daemon.pipeline.frames import Frame
from daemon.pipeline.sampler import Sampler
from daemon.pipeline.stream_state import StreamContext

IMAGE = np.zeros((36, 64, 3), np.uint8)


def settings(heartbeat_s: float = 10.0, caption_every_s: float = 1.0, question_every_s: float = 1.0,
             snapshot: bool = False, **stream: Any) -> Settings:
    entry: Dict[str, Any] = {
        "name": "cam", "url": "rtsp://cam.invalid/stream1",
        "caption": {"enabled": True, "every_s": caption_every_s},
        "prompts": [{"id": "thing", "text": "a red circle", "enter": 0.6, "exit": 0.4, "dwell_s": 0}],
        "questions": [{"id": "what", "text": "what is it?", "every_s": question_every_s}],
    }
    entry.update(stream)
    return Settings.model_validate({
        "model": {"package": "/nonexistent/package"},
        "publish": {"heartbeat_s": heartbeat_s, "snapshot": {"enabled": snapshot}},
        "streams": [entry],
    }, context={})


class Recorder:
    """Stands in for daemon.publish.publisher.Publisher: keeps what would be sent."""

    def __init__(self, fail_on: Optional[str] = None, fail_times: int = 1) -> None:
        self.events: List[Any] = []
        self.jpegs: List[Optional[bytes]] = []
        self.fail_on = fail_on
        self.fail_times = fail_times

    def publish(self, event: Any, jpeg: Optional[bytes] = None, mono_time: Optional[float] = None) -> bool:
        if self.fail_on is not None and event.TYPE == self.fail_on and self.fail_times > 0:
            self.fail_times -= 1
            raise RuntimeError("publisher broke on %s" % event.TYPE)
        self.events.append(event)
        self.jpegs.append(jpeg)
        return True

    def of(self, kind: str) -> List[Any]:
        return [e for e in self.events if e.TYPE == kind]


class ScriptedEngine:
    """Answers every task; raises for the tasks named in `broken` (any call that includes one)."""

    def __init__(self, broken: Set[str] = frozenset(), caption: str = "a thing", score: float = 0.9,
                 answer: str = "yes") -> None:
        self.broken = set(broken)
        self.caption, self.score, self.answer = caption, score, answer
        self.calls: List[Tuple[str, ...]] = []

    def infer(self, frame: np.ndarray, caption: bool = False, prompts: Optional[Mapping[str, str]] = None,
              questions: Optional[Mapping[str, str]] = None, pixels: Any = None) -> EngineResult:
        wanted = (("caption", caption), ("match", bool(prompts)), ("answer", bool(questions)))
        asked = tuple(task for task, on in wanted if on)
        self.calls.append(asked)
        for task in asked:
            if task in self.broken:
                raise TypeError("TextInputSequence must be str (%s)" % task)
        return EngineResult(caption=self.caption if caption else None,
                            scores={k: self.score for k in (prompts or {})},
                            answers={k: self.answer for k in (questions or {})})


class Progress:
    def __init__(self) -> None:
        self.started = self.done = 0

    def work_started(self) -> None:
        self.started += 1

    def work_done(self) -> None:
        self.done += 1


def context(cfg: Settings, sampler: Optional[Sampler] = None) -> Tuple[StreamContext, ResolvedStream]:
    stream = cfg.resolved_streams()[0]
    state = StreamContext(stream, StreamCounters(stream.name), update_every_s=stream.update_every_s)
    state.sampler = sampler
    return state, stream


def emitter(cfg: Settings, publisher: Recorder) -> Emitter:
    return Emitter(publisher, cfg.publish)


def frame(index: int, t: float, image: np.ndarray = IMAGE, media: Optional[float] = None) -> Frame:
    """Frame `index` captured at monotonic time `t` (and wall time 1000 + t)."""
    return Frame("cam", index, t, 1000.0 + t, t, image, {}, media)


class Lockstep:
    """next_frame for a Worker thread: hands out the given frames, then None."""

    def __init__(self, frames: List[Frame]) -> None:
        self._frames = list(frames)
        self._lock = threading.Lock()
        self.taken = threading.Event()

    def __call__(self, timeout: float) -> Optional[Frame]:
        with self._lock:
            if self._frames:
                return self._frames.pop(0)
        self.taken.set()
        self.taken.wait(min(timeout, 0.05))
        return None
