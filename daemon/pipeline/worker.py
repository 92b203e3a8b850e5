"""Worker threads: take the next frame fairly from the scheduler, run the stream's due tasks on this
worker's own engine, feed the results to tracking and hand the events to the publisher.

One engine per worker thread: ONNX Runtime sessions and sail engines are not shared across threads.
The unit of work is one frame, and it is guarded as a whole: whatever fails (inference, tracking,
snapshot encoding, publishing) ends that frame counted `failed`, is logged at most once a minute
per stream (a traceback for anything but an inference error) and leaves the scene gate free to
let a similar frame through; the worker goes on with the next frame.

One task's failure does not take the frame's other tasks with it: the tasks run in one
`Engine.infer` call (the vision graph once per frame), and when that call fails each task is run
alone; a task that failed keeps running alone for ISOLATE_S of task time (so a broken question
costs one extra vision pass, not every frame's caption). Failures are counted per task
(`failed_caption`, `failed_match`, `failed_answer`); a frame on which at least one task
succeeded counts as `inferred`.
"""
import logging
import threading
import time
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Tuple

from daemon.ops.ratelimit import RateLimiter
from daemon.pipeline.emit import Emitter
from daemon.pipeline.frames import Frame
from daemon.pipeline.stream_state import StreamContext

log = logging.getLogger(__name__)

GET_TIMEOUT_S = 0.5
ENGINE_LOAD_TIMEOUT_S = 600.0
ISOLATE_S = 60.0
"""Task time a task that failed runs in its own `infer` call before it joins the others again."""
TASKS = ("caption", "match", "answer")


@dataclass(frozen=True)
class DueTasks:
    """What to run on one frame: decided from the stream's intervals before any inference."""

    caption: bool
    prompts: Dict[str, str]
    questions: Dict[str, str]

    def empty(self) -> bool:
        return not (self.caption or self.prompts or self.questions)

    def names(self) -> Tuple[str, ...]:
        """The due task names, in TASKS order."""
        on = {"caption": self.caption, "match": bool(self.prompts), "answer": bool(self.questions)}
        return tuple(task for task in TASKS if on[task])


@dataclass
class _Results:
    """What the frame's `infer` calls returned, merged; `failed`: task -> one-line reason."""

    caption: Optional[str] = None
    scores: Optional[Dict[str, float]] = None
    answers: Optional[Dict[str, str]] = None
    failed: Optional[Dict[str, str]] = None


def due_tasks(state: StreamContext, now: float) -> DueTasks:
    """Caption and questions run at their own intervals; prompts are scored on every sampled frame."""
    cfg = state.config
    caption = bool(cfg.caption.enabled) and now >= state.next_caption
    prompts = {p.id: p.text for p in cfg.prompts}
    questions = {q.id: q.text for q in cfg.questions if now >= state.next_question.get(q.id, float("-inf"))}
    return DueTasks(caption=caption, prompts=prompts, questions=questions)


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class Worker:
    """One inference thread with its own engine."""

    def __init__(
        self,
        index: int,
        engine_factory: Callable[[], object],
        next_frame: Callable[[float], Optional[Frame]],
        state_of: Callable[[str], Optional[StreamContext]],
        emitter: Emitter,
        progress,  # type: ignore[no-untyped-def]  # daemon.ops.health.ProgressMonitor
        observe_latency: Callable[[str, float], None],
        on_orphan: Optional[Callable[[Frame], None]] = None,
        on_done: Optional[Callable[[str], None]] = None,
    ) -> None:
        """on_orphan: counts a frame whose stream was removed between the scheduler handing it out
        and this worker looking the stream up (so every decoded frame stays accounted for);
        on_done(stream): called after every frame, whatever happened to it (Scheduler.done)."""
        self.index = index
        self._engine_factory = engine_factory
        self._next_frame = next_frame
        self._state_of = state_of
        self._emit = emitter
        self._progress = progress
        self._observe = observe_latency
        self._on_orphan = on_orphan
        self._on_done = on_done
        self._stop = threading.Event()
        self._loaded = threading.Event()
        self.load_error: Optional[BaseException] = None
        self._failures = RateLimiter(60.0)
        self._engine = None  # type: Optional[Any]
        self._thread = threading.Thread(target=self._run, name="worker-%d" % index, daemon=True)

    def start(self) -> None:
        self._thread.start()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

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
                if frame is not None:
                    try:
                        self._handle(frame)
                    finally:
                        if self._on_done is not None:
                            self._on_done(frame.stream)
        finally:
            close = getattr(self._engine, "close", None)
            if close is not None:
                close()

    def _handle(self, frame: Frame) -> None:
        """Look the stream up and process the frame; nothing raised here ends the thread."""
        try:
            state = self._state_of(frame.stream)
            if state is None:  # the stream was removed after the frame was queued
                if self._on_orphan is not None:
                    self._on_orphan(frame)
                return
            with state.lock:
                self.process(state, frame)
        except Exception:  # a bug outside process()'s own guard: keep the worker alive
            if self._failures.allow("worker:" + frame.stream)[0]:
                log.exception("worker %d: unexpected error on frame %d of stream %s", self.index, frame.index,
                              frame.stream, extra={"stream": frame.stream})

    def process(self, state: StreamContext, frame: Frame) -> None:
        """Run what is due on `frame`; every frame ends counted as inferred, failed or not_due.
        Caller holds `state.lock`."""
        outcome = "failed"
        try:
            due = due_tasks(state, frame.task_time)
            if due.empty():
                outcome = "not_due"
            else:
                self._progress.work_started()
                try:
                    outcome = "inferred" if self._infer_and_emit(state, frame, due) else "failed"
                finally:
                    self._progress.work_done()
        except Exception as exc:  # tracking, snapshot encoding, publishing...: this frame only
            self._warn(state, frame, "processing", exc, traceback=True)
        if outcome == "not_due":
            state.counters.drop("not_due")
        else:
            state.counters.add(outcome)
        self._tell_sampler(state, frame, inferred=outcome == "inferred")

    def _tell_sampler(self, state: StreamContext, frame: Frame, inferred: bool) -> None:
        """The scene gate's reference is the last frame actually inferred and published; an
        uninferred frame must not keep similar ones out. A due heartbeat lets the next one in."""
        sampler = state.sampler
        if sampler is None:
            return
        sampler.force_at(self._emit.next_heartbeat(state))  # type: ignore[attr-defined]
        # last: a `realtime: false` reader waits for this before its next gate decision
        if inferred:
            sampler.inferred(frame.index)  # type: ignore[attr-defined]
        else:
            sampler.discarded(frame.index)  # type: ignore[attr-defined]

    def _infer_and_emit(self, state: StreamContext, frame: Frame, due: DueTasks) -> bool:
        """Infer, then publish what each task produced. False when every due task failed."""
        start = time.monotonic()
        results = self._infer(state, frame, due)
        failed = results.failed or {}
        ran = [task for task in due.names() if task not in failed]
        if not ran:
            return False
        self._observe("+".join(ran), time.monotonic() - start)
        if results.caption is not None:
            state.next_caption = frame.task_time + state.config.caption.every_s
            self._emit.caption(state, frame, results.caption)
        if results.scores is not None:
            self._emit.matches(state, frame, results.scores)
            if state.sampler is not None:
                state.sampler.hold_open(state.trackers.settling())  # type: ignore[attr-defined]
        if results.answers is not None:
            every = {q.id: q.every_s for q in state.config.questions}
            for qid in results.answers:
                state.next_question[qid] = frame.task_time + every.get(qid, 0.0)
            self._emit.answers(state, frame, results.answers)
        state.last_frame = frame
        return True

    def _infer(self, state: StreamContext, frame: Frame, due: DueTasks) -> _Results:
        """One `infer` for the healthy tasks, one per task that failed lately; a failing group is
        split into single tasks so the others still get their results."""
        now = frame.task_time
        isolated = [task for task in due.names() if state.failing.get(task, float("-inf")) > now]
        together = tuple(task for task in due.names() if task not in isolated)
        groups: List[Tuple[str, ...]] = ([together] if together else []) + [(task,) for task in isolated]
        results = _Results(failed={})
        while groups:
            group = groups.pop(0)
            try:
                out = self._engine.infer(  # type: ignore[union-attr]
                    frame.image,
                    caption="caption" in group,
                    prompts=due.prompts if "match" in group else {},
                    questions=due.questions if "answer" in group else {},
                    # pixel values the decoder's device made (`preprocess: tpu`), else the engine preprocesses
                    pixels=frame.pixels or None,
                )
            except Exception as exc:  # any model/runtime failure: find the task, keep the others
                if len(group) > 1:
                    groups = [(task,) for task in group] + groups
                    continue
                task = group[0]
                state.failing[task] = now + ISOLATE_S
                state.counters.add("failed_" + task)
                results.failed[task] = _one_line(exc)  # type: ignore[index]
                self._warn(state, frame, task, exc)
                continue
            if len(group) == 1:
                state.failing.pop(group[0], None)
            if "caption" in group:
                results.caption = out.caption
            if "match" in group:
                results.scores = dict(out.scores)
            if "answer" in group:
                results.answers = dict(out.answers)
        return results

    def _warn(self, state: StreamContext, frame: Frame, what: str, exc: BaseException, traceback: bool = False) -> None:
        """At most one message a minute per stream and kind; the normal logger (redaction filter)."""
        allowed, suppressed = self._failures.allow("%s:%s" % (state.name, "crash" if traceback else what))
        if not allowed:
            return
        more = " (%d more failures since the last message)" % suppressed if suppressed else ""
        if traceback:
            state.log.error("%s failed on frame %d: %s: %s%s", what, frame.index, type(exc).__name__,
                            _one_line(exc), more, exc_info=exc)
        else:
            state.log.warning("%s failed on frame %d: %s%s", what, frame.index, _one_line(exc), more)
