"""Worker threads: take the next frame fairly from the scheduler, run the stream's due tasks on this
worker's own engine, feed the results to tracking and hand the events to the publisher.

One engine per worker thread: ONNX Runtime sessions and sail engines are not shared across threads.
An inference error on one frame is counted and logged at most once a minute per stream; the worker
goes on with the next frame.
"""
import logging
import threading
import time
from dataclasses import dataclass
from typing import Callable, Dict, Optional

from daemon.pipeline.emit import Emitter
from daemon.pipeline.frames import Frame
from daemon.ops.ratelimit import RateLimiter
from daemon.pipeline.stream_state import StreamState

log = logging.getLogger(__name__)

GET_TIMEOUT_S = 0.5
ENGINE_LOAD_TIMEOUT_S = 600.0


@dataclass(frozen=True)
class DueTasks:
    """What to run on one frame: decided from the stream's intervals before any inference."""

    caption: bool
    prompts: Dict[str, str]
    questions: Dict[str, str]

    def empty(self) -> bool:
        return not (self.caption or self.prompts or self.questions)


def due_tasks(state: StreamState, now: float) -> DueTasks:
    """Caption and questions run at their own intervals; prompts are scored on every sampled frame."""
    cfg = state.config
    caption = bool(cfg.caption.enabled) and now >= state.next_caption
    prompts = {p.id: p.text for p in cfg.prompts}
    questions = {q.id: q.text for q in cfg.questions if now >= state.next_question.get(q.id, float("-inf"))}
    return DueTasks(caption=caption, prompts=prompts, questions=questions)


class Worker:
    """One inference thread with its own engine."""

    def __init__(
        self,
        index: int,
        engine_factory: Callable[[], object],
        next_frame: Callable[[float], Optional[Frame]],
        state_of: Callable[[str], Optional[StreamState]],
        emitter: Emitter,
        progress,  # type: ignore[no-untyped-def]  # daemon.ops.health.ProgressMonitor
        observe_latency: Callable[[str, float], None],
        on_orphan: Optional[Callable[[Frame], None]] = None,
    ) -> None:
        """on_orphan: counts a frame whose stream was removed between the scheduler handing it out
        and this worker looking the stream up (so every decoded frame stays accounted for)."""
        self.index = index
        self._engine_factory = engine_factory
        self._next_frame = next_frame
        self._state_of = state_of
        self._emit = emitter
        self._progress = progress
        self._observe = observe_latency
        self._on_orphan = on_orphan
        self._stop = threading.Event()
        self._loaded = threading.Event()
        self.load_error: Optional[BaseException] = None
        self._failures = RateLimiter(60.0)
        self._engine = None  # type: Optional[object]
        self._thread = threading.Thread(target=self._run, name="worker-%d" % index, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def wait_loaded(self, timeout: float = ENGINE_LOAD_TIMEOUT_S) -> bool:
        """True once the engine is loaded; check `load_error` when it failed."""
        return self._loaded.wait(timeout) and self.load_error is None

    def stop(self, timeout: float) -> bool:
        """Finish the frame in flight, then exit. Returns False if the thread is still busy after timeout."""
        self._stop.set()
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def _run(self) -> None:
        try:
            self._engine = self._engine_factory()
        except BaseException as exc:  # reported by the service, which refuses to start
            self.load_error = exc
            self._loaded.set()
            return
        self._loaded.set()
        try:
            while not self._stop.is_set():
                frame = self._next_frame(GET_TIMEOUT_S)
                if frame is None:
                    continue
                state = self._state_of(frame.stream)
                if state is None:  # the stream was removed after the frame was queued
                    if self._on_orphan is not None:
                        self._on_orphan(frame)
                    continue
                with state.lock:
                    self.process(state, frame)
        finally:
            close = getattr(self._engine, "close", None)
            if close is not None:
                close()

    def process(self, state: StreamState, frame: Frame) -> None:
        """Run what is due on `frame`; every frame ends counted as inferred, failed or not_due."""
        due = due_tasks(state, frame.mono_time)
        if due.empty():
            state.counters.drop("not_due")
            self._discard(state, frame)
            return
        self._progress.work_started()
        try:
            ok = self._run_tasks(state, frame, due)
        finally:
            self._progress.work_done()
        state.counters.add("inferred" if ok else "failed")
        if not ok:
            self._discard(state, frame)

    @staticmethod
    def _discard(state: StreamState, frame: Frame) -> None:
        """The scene gate must not treat an uninferred frame as seen."""
        if state.sampler is not None:
            state.sampler.discarded(frame.index)  # type: ignore[attr-defined]

    def _run_tasks(self, state: StreamState, frame: Frame, due: DueTasks) -> bool:
        """One `Engine.infer` call: tasks sharing a vision graph embed the frame once."""
        names = "+".join(n for n, on in (("caption", due.caption), ("match", due.prompts), ("answer", due.questions)) if on)
        start = time.monotonic()
        try:
            # pixel values the decoder's device made (`preprocess: tpu`), else the engine preprocesses
            result = self._engine.infer(  # type: ignore[union-attr]
                frame.image, caption=due.caption, prompts=due.prompts, questions=due.questions,
                pixels=frame.pixels or None,
            )
        except Exception as exc:  # any model/runtime failure: skip this frame, keep serving
            allowed, suppressed = self._failures.allow(state.name)
            if allowed:
                state.log.warning(
                    "%s failed on frame %d: %s%s",
                    names,
                    frame.index,
                    str(exc).splitlines()[0] if str(exc) else type(exc).__name__,
                    " (%d more failures since the last message)" % suppressed if suppressed else "",
                )
            return False
        self._observe(names, time.monotonic() - start)
        if state.sampler is not None:
            state.sampler.inferred(frame.index)  # type: ignore[attr-defined]  # the scene gate's new reference
        if due.caption and result.caption is not None:
            state.next_caption = frame.mono_time + state.config.caption.every_s
            self._emit.caption(state, frame, result.caption)
        if due.prompts:
            self._emit.matches(state, frame, result.scores)
            if state.sampler is not None:
                state.sampler.hold_open(state.trackers.settling())  # type: ignore[attr-defined]
        if due.questions:
            every = {q.id: q.every_s for q in state.config.questions}
            for qid in result.answers:
                state.next_question[qid] = frame.mono_time + every.get(qid, 0.0)
            self._emit.answers(state, frame, result.answers)
        state.last_frame = frame
        return True
