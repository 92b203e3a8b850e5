"""Worker: one frame is the unit of work. Whatever fails after inference fails that frame only
(counted, logged with a traceback at most once a minute, the scene gate not fooled) and the
thread goes on; one task's failure leaves the frame's other tasks their results; a due
heartbeat opens the scene gate."""
import dataclasses
import logging
import time
from typing import Callable

import numpy as np
import pytest

from daemon.pipeline.sampler import Sampler
from daemon.pipeline.worker import ISOLATE_S, Worker
from tests.daemon.helpers_pipeline import (
    IMAGE, Lockstep, Progress, Recorder, ScriptedEngine, context, emitter, frame, settings,
)


def make_worker(cfg, publisher: Recorder, engine: ScriptedEngine, state, frames=()):  # type: ignore[no-untyped-def]
    return Worker(0, lambda: engine, Lockstep(list(frames)), lambda name: state, emitter(cfg, publisher),
                  Progress(), lambda names, seconds: None)


def wait_until(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)  # polling the worker thread's counters


def test_a_failure_after_inference_fails_that_frame_and_the_thread_goes_on(caplog: pytest.LogCaptureFixture) -> None:
    cfg = settings(heartbeat_s=0.001)
    publisher = Recorder(fail_on="caption", fail_times=2)
    state, _ = context(cfg)
    frames = [frame(i, float(i)) for i in range(4)]
    worker = make_worker(cfg, publisher, ScriptedEngine(), state, frames)
    caplog.set_level(logging.WARNING)
    worker.start()
    try:
        wait_until(lambda: state.counters.get("inferred") + state.counters.get("failed") == 4)
        assert worker.alive, "the worker thread died"
    finally:
        assert worker.stop(5)
    assert (state.counters.get("failed"), state.counters.get("inferred")) == (2, 2)
    assert len(publisher.of("caption")) == 2
    tracebacks = [r for r in caplog.records if r.exc_info and r.name == "daemon.pipeline.worker"]
    assert len(tracebacks) == 1, "one traceback a minute per stream"
    assert "publisher broke on caption" in tracebacks[0].getMessage()
    assert getattr(tracebacks[0], "stream", None) == "cam"


def test_a_failed_frame_does_not_become_the_scene_gate_reference() -> None:
    cfg = settings()
    sampler = Sampler(0.0, scene_change=0.05, max_skip_s=1000.0, pending_s=1000.0)
    state, _ = context(cfg, sampler)
    worker = make_worker(cfg, Recorder(fail_on="caption"), ScriptedEngine(), state)
    worker._engine = ScriptedEngine()
    sampler.due(0.0)
    assert sampler.changed(IMAGE, 0, 0.0)
    worker.process(state, frame(0, 0.0))
    assert state.counters.get("failed") == 1
    sampler.due(0.5)
    assert sampler.changed(IMAGE, 1, 0.5), "the failed frame must not keep a similar one out"
    worker.process(state, frame(1, 0.5))
    assert state.counters.get("inferred") == 1
    sampler.due(1.0)
    assert not sampler.changed(IMAGE, 2, 1.0), "an inferred frame is the gate's reference"


def test_a_failing_question_lets_the_caption_and_matches_publish() -> None:
    cfg = settings()
    publisher = Recorder()
    engine = ScriptedEngine(broken={"answer"})
    state, _ = context(cfg)
    worker = make_worker(cfg, publisher, engine, state)
    worker._engine = engine
    worker.process(state, frame(0, 0.0))
    assert [e.TYPE for e in publisher.events] == ["caption", "match"]
    assert state.counters.get("inferred") == 1 and state.counters.get("failed") == 0
    assert state.counters.get("failed_answer") == 1
    assert engine.calls == [("caption", "match", "answer"), ("caption",), ("match",), ("answer",)]
    engine.calls.clear()
    worker.process(state, frame(1, 1.0))
    assert engine.calls == [("caption", "match"), ("answer",)], "the failing task now runs apart"
    assert state.counters.get("failed_answer") == 2
    engine.broken.clear()
    engine.calls.clear()
    worker.process(state, frame(2, 2.0))
    assert engine.calls == [("caption", "match"), ("answer",)]
    assert publisher.of("answer"), "the answer publishes once the task works again"
    engine.calls.clear()
    worker.process(state, frame(3, 3.0))
    assert engine.calls == [("caption", "match", "answer")], "and it joins the others"


def test_a_task_that_keeps_failing_is_tried_together_again_after_a_while() -> None:
    cfg = settings()
    engine = ScriptedEngine(broken={"caption"})
    state, _ = context(cfg)
    worker = make_worker(cfg, Recorder(), engine, state)
    worker._engine = engine
    worker.process(state, frame(0, 0.0))
    engine.calls.clear()
    worker.process(state, frame(1, ISOLATE_S + 1.0))
    assert engine.calls[0] == ("caption", "match", "answer")


def test_a_frame_whose_every_task_fails_is_counted_failed(caplog: pytest.LogCaptureFixture) -> None:
    cfg = settings()
    publisher = Recorder()
    state, _ = context(cfg)
    engine = ScriptedEngine(broken={"caption", "match", "answer"})
    worker = make_worker(cfg, publisher, engine, state)
    worker._engine = engine
    caplog.set_level(logging.WARNING)
    worker.process(state, frame(0, 0.0))
    assert state.counters.get("failed") == 1 and state.counters.get("inferred") == 0
    assert publisher.events == []
    messages = [r.getMessage() for r in caplog.records]
    assert any("answer failed on frame 0: TextInputSequence must be str" in m for m in messages), messages
    assert not any(r.exc_info for r in caplog.records), "an inference error is one line, no traceback"


def test_nothing_due_is_counted_not_due() -> None:
    cfg = settings(caption_every_s=10.0, question_every_s=10.0, prompts=[])
    state, _ = context(cfg)
    engine = ScriptedEngine()
    worker = make_worker(cfg, Recorder(), engine, state)
    worker._engine = engine
    worker.process(state, frame(0, 0.0))
    worker.process(state, frame(1, 1.0))
    snap = state.counters.snapshot()
    assert snap["inferred"] == 1 and snap["dropped"]["not_due"] == 1  # type: ignore[index]


def test_a_due_heartbeat_opens_the_scene_gate() -> None:
    """Defect: a static scene kept the frame a heartbeat needed out for up to max_skip_s."""
    cfg = settings(heartbeat_s=10.0, caption_every_s=1.0, prompts=[], questions=[])
    sampler = Sampler(1.0, scene_change=0.05, max_skip_s=1000.0, pending_s=0.0)
    publisher = Recorder()
    state, _ = context(cfg, sampler)
    engine = ScriptedEngine()
    worker = make_worker(cfg, publisher, engine, state)
    worker._engine = engine
    static = np.full((36, 64, 3), 90, np.uint8)
    captions_at = []
    for t in range(0, 25):
        if sampler.due(float(t), now_mono=float(t), is_live=True) and sampler.changed(static, t, float(t)):
            before = len(publisher.of("caption"))
            worker.process(state, frame(t, float(t), static))
            if len(publisher.of("caption")) > before:
                captions_at.append(t)
    assert captions_at == [0, 10, 20], captions_at


def test_the_worker_runs_on_media_time_when_the_frame_has_one() -> None:
    """A file read with realtime: false: intervals follow media time, not the machine's speed."""
    cfg = settings(heartbeat_s=100.0, caption_every_s=2.0, prompts=[], questions=[])
    publisher = Recorder()
    state, _ = context(cfg)
    engine = ScriptedEngine()
    worker = make_worker(cfg, publisher, engine, state)
    worker._engine = engine
    for i in range(5):  # all captured within a millisecond, one media second apart
        worker.process(state, frame(i, 0.0001 * i, media=float(i)))
    snap = state.counters.snapshot()
    assert snap["inferred"] == 3 and snap["dropped"]["not_due"] == 2  # type: ignore[index]


def test_the_worker_says_done_after_every_frame_failed_or_orphaned() -> None:
    """Scheduler.done releases the stream to the other workers: it must come for a frame that
    failed after inference and for one whose stream was removed, or the stream would starve."""
    cfg = settings(heartbeat_s=0.001)
    publisher = Recorder(fail_on="caption", fail_times=1)
    state, _ = context(cfg)
    frames = [frame(0, 0.0), frame(1, 1.0), dataclasses.replace(frame(2, 2.0), stream="gone")]
    done = []
    worker = Worker(0, lambda: ScriptedEngine(), Lockstep(frames), lambda name: state if name == "cam" else None,
                    emitter(cfg, publisher), Progress(), lambda names, seconds: None,
                    on_orphan=lambda f: None, on_done=done.append)
    worker.start()
    try:
        wait_until(lambda: len(done) == 3)
    finally:
        assert worker.stop(5)
    assert done == ["cam", "cam", "gone"]
    assert (state.counters.get("failed"), state.counters.get("inferred")) == (1, 1)
