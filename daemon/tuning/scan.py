"""`blipd scan`: one stream's tasks over recorded files at full speed, through the daemon's own parts.

The reader is the daemon's StreamSupervisor (decoder, sampler, frame accounting), the inference
the daemon's Worker (due tasks, Engine.infer, tracking, Emitter), the events the daemon's event
classes; only two pieces differ, and neither decides anything (daemon/tuning/handoff.py): the
scheduler's slot is a one-frame handoff that waits for the worker (no frame replaced or too old,
so every sample point is inferred or gated, in order), and the publisher is a collector.

Time is media time: the file is read with `realtime: false`, so the supervisor samples on the
file's media time and puts it on every frame (Frame.media_s, `time` = the scan's start plus media
time): `every_s`, `dwell_s`, `cooldown_s`, heartbeats and `update_every_s` mean seconds of video,
whatever the scan's speed. Around the reused parts a recording sampler and engine note per sample
point (`pts_s` is its media time) whether the scene gate let it through and what each task returned.
"""
import dataclasses
import logging
import threading
import time
import uuid
from typing import Any, Callable, Dict, List, Optional

from daemon.config.config import ResolvedStream, Settings, SnapshotSettings
from daemon.counters import StreamCounters
from daemon.errors import SourceError
from daemon.ops.health import ProgressMonitor
from daemon.pipeline.emit import Emitter
from daemon.pipeline.frames import Frame
from daemon.pipeline.sampler import Sampler
from daemon.pipeline.sources.base import Source, SourceSpec
from daemon.pipeline.sources.factory import make_source
from daemon.pipeline.sources.supervisor import (TERMINAL, SourceState, StreamStatus, StreamSupervisor,
                                                SupervisorPolicy)
from daemon.pipeline.stream_state import StreamContext
from daemon.pipeline.streams import device_preprocess, source_spec
from daemon.pipeline.worker import Worker
from daemon.publish.events import StreamEvent
from daemon.tuning.handoff import Collector, Lockstep

log = logging.getLogger(__name__)

ENGINE_LOAD_TIMEOUT_S = 600.0
STOP_TIMEOUT_S = 10.0
PROGRESS_EVERY_S = 0.2

Progress = Callable[[str, float, Optional[float]], None]
"""progress(file, media seconds done, duration or None), called from the scanning thread."""


@dataclasses.dataclass
class FileScan:
    """What one file gave: its sample points, the events as published, counters and speed."""

    file: str
    samples: List[Dict[str, Any]]
    events: List[Dict[str, Any]]
    counters: Dict[str, Any]
    duration_s: float
    elapsed_s: float
    inference_s: float

    @property
    def speed(self) -> float:
        """Seconds of video per second of scanning."""
        return self.duration_s / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def as_json(self) -> Dict[str, Any]:
        return {"file": self.file, "duration_s": round(self.duration_s, 3), "elapsed_s": round(self.elapsed_s, 3),
                "speed": round(self.speed, 2), "inference_s": round(self.inference_s, 3),
                "counters": self.counters, "samples": self.samples, "events": self.events}


class _SourceWatch:
    """Keeps the source the supervisor opens, so the progress display can read its position."""

    def __init__(self) -> None:
        self.source: Optional[Source] = None

    def make_source(self, spec: SourceSpec) -> Source:
        self.source = make_source(spec)
        return self.source

    def pts(self) -> float:
        source = self.source
        return source.pts_s if source is not None else 0.0


class _RecordingSampler(Sampler):
    """The daemon's Sampler, noting each sample point and the scene gate's answer."""

    def __init__(self, on_sample: Callable[[Any, float, bool], None], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._on_sample = on_sample
        self._due_pts = 0.0

    def due(self, pts_s: float, now_mono: Optional[float] = None, is_live: bool = False) -> bool:
        ok = super().due(pts_s, now_mono, is_live)
        if ok:
            self._due_pts = pts_s
        return ok

    def changed(self, image: Any, key: Any = None, *args: Any, **kwargs: Any) -> bool:
        passed = super().changed(image, key, *args, **kwargs)
        self._on_sample(key, self._due_pts, passed)
        return passed


class _RecordingEngine:
    """Passes `infer` to the real engine and merges what the calls for one frame returned (the
    worker may split a frame's tasks over several calls); `close` is left to the scan."""

    def __init__(self, engine: Any) -> None:
        self.engine = engine
        self.found: Dict[str, Any] = {}

    def infer(self, *args: Any, **kwargs: Any) -> Any:
        result = self.engine.infer(*args, **kwargs)
        if result.caption is not None:
            self.found["caption"] = result.caption
        self.found.setdefault("raw", {}).update(result.scores)
        self.found.setdefault("answers", {}).update(result.answers)
        return result


class Scanner:
    """One stream of a config, ready to scan files one after another with one engine."""

    def __init__(self, settings: Settings, stream: ResolvedStream, package: Any,
                 engine_factory: Callable[[], Any]) -> None:
        self.settings = settings
        self.stream = stream
        self.package = package
        self._factory = engine_factory
        self._collector = Collector("scan-" + uuid.uuid4().hex[:8], package.name, settings.name)
        # no JPEG snapshots: nothing would send them
        publish = settings.publish.model_copy(update={"snapshot": SnapshotSettings(enabled=False)})
        self._emitter = Emitter(self._collector, publish)
        self._lockstep = Lockstep()
        self._state: Optional[StreamContext] = None
        self._engine: Optional[_RecordingEngine] = None
        self._inference_s = 0.0
        self._worker = Worker(0, self._load_engine, self._lockstep.next_frame, self._state_of, self._emitter,
                              ProgressMonitor(stall_after_s=ENGINE_LOAD_TIMEOUT_S), self._observe)

    def _load_engine(self) -> _RecordingEngine:
        """In the worker's thread, as the daemon loads its engines."""
        self._engine = _RecordingEngine(self._factory())
        return self._engine

    def _state_of(self, name: str) -> Optional[StreamContext]:
        state = self._state
        return state if state is not None and state.name == name else None

    def _observe(self, _names: str, seconds: float) -> None:
        self._inference_s += seconds

    def start(self) -> None:
        """Load the engine (in the worker's thread); the model's own errors propagate as one line."""
        self._worker.start()
        if not self._worker.wait_loaded(ENGINE_LOAD_TIMEOUT_S):
            error = self._worker.load_error
            raise error if error is not None else SourceError("the model did not load within %.0f s"
                                                              % ENGINE_LOAD_TIMEOUT_S)

    def close(self) -> None:
        self._lockstep.close()
        self._worker.stop(STOP_TIMEOUT_S)
        close = getattr(self._engine.engine if self._engine else None, "close", None)
        if close is not None:
            close()

    def __enter__(self) -> "Scanner":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- one file --------------------------------------------------------------------------------
    def scan(self, path: str, progress: Optional[Progress] = None, duration_s: Optional[float] = None) -> FileScan:
        """Scan one file; SourceError (one line) when it cannot be read as video."""
        cfg = self.stream
        watch = _SourceWatch()
        counters = StreamCounters(cfg.name)
        state = StreamContext(cfg, counters, update_every_s=cfg.update_every_s)
        run = _FileRun(state, self._collector, self._emitter)
        state.sampler = _RecordingSampler(run.on_sample, every_s=cfg.sample_every_s, scene_change=cfg.scene_change,
                                          max_skip_s=cfg.max_skip_s, pending_s=cfg.max_frame_age_s)
        self._collector.begin()
        self._inference_s = 0.0
        self._state = state
        preprocess = device_preprocess(self.package, cfg) if self.settings.model.preprocess == "tpu" else None
        spec = dataclasses.replace(source_spec(cfg, self.settings.model.device, preprocess),
                                   url=path, display_url=path, is_live=False, loop=False, realtime=False)
        supervisor = StreamSupervisor(
            spec, state.sampler, lambda frame: run.sink(frame, self._lockstep, self._engine),  # type: ignore[arg-type]
            counters, run.on_state, policy=SupervisorPolicy(file_retries=0),
            source_factory=watch.make_source)
        if progress is not None:
            progress(path, 0.0, duration_s)
        started = time.monotonic()
        supervisor.start()
        try:
            while not run.done.wait(PROGRESS_EVERY_S):
                if progress is not None:
                    progress(path, watch.pts(), duration_s)
        finally:
            supervisor.stop(STOP_TIMEOUT_S)
            self._state = None
        elapsed = time.monotonic() - started
        if run.final.state is SourceState.FAILED:
            raise SourceError(run.final.reason)
        duration = max(run.last_pts, watch.pts())
        if progress is not None:
            progress(path, duration, duration)
        return FileScan(path, run.samples, list(self._collector.events), counters.snapshot(), duration,
                        elapsed, self._inference_s)


class _FileRun:
    """The recording side of one file's scan: sample points, and the stream's terminal state."""

    def __init__(self, state: StreamContext, collector: Collector, emitter: Emitter) -> None:
        self.state = state
        self.wall0 = time.time()
        self.collector = collector
        self.emitter = emitter
        self.samples: List[Dict[str, Any]] = []
        self._by_frame: Dict[Any, Dict[str, Any]] = {}
        self.done = threading.Event()
        self.final = StreamStatus(state.name, SourceState.STARTING)
        self.last_pts = 0.0

    def on_sample(self, key: Any, pts_s: float, passed: bool) -> None:
        """Reader thread, from the sampler: one sample point. Gated ones carry the tracker as is."""
        sample: Dict[str, Any] = {"pts_s": round(pts_s, 4), "frame": key, "gate": passed, "inferred": False,
                                  "caption": None, "raw": {}, "answers": {}}
        self.last_pts = max(self.last_pts, pts_s)
        self.samples.append(sample)
        if passed:
            self._by_frame[key] = sample
        else:
            self._note_tracking(sample)

    def sink(self, frame: Frame, lockstep: Lockstep, engine: Optional[_RecordingEngine]) -> None:
        """Reader thread: hand the frame to the worker, wait until it is done, note what it found."""
        sample = self._by_frame.pop(frame.index, None)
        if engine is not None:
            engine.found = {}
        inferred_before = self.state.counters.get("inferred")
        lockstep.put(frame)
        if sample is None:
            return
        found = engine.found if engine is not None else {}
        sample["inferred"] = self.state.counters.get("inferred") > inferred_before
        sample["caption"] = found.get("caption")
        sample["raw"] = {k: round(float(v), 6) for k, v in found.get("raw", {}).items()}
        sample["answers"] = dict(found.get("answers", {}))
        self._note_tracking(sample)

    def _note_tracking(self, sample: Dict[str, Any]) -> None:
        scores = self.state.trackers.scores()
        sample["score"] = {k: (None if v is None else round(float(v), 6)) for k, v in scores.items()}
        sample["active"] = self.state.trackers.active()

    def media_wall(self) -> float:
        """`time` of the last sample point: the scan's start plus its media time."""
        return self.wall0 + self.last_pts

    def on_state(self, status: StreamStatus) -> None:
        """What StreamSet does for the daemon: publish the change; after the last frame of a
        stream, end its active matches (at the last sample point's media time)."""
        if status.state is SourceState.STARTING:
            return
        self.collector.publish(StreamEvent(stream=status.stream, time=self.media_wall(), pts_s=None, frame=None,
                                           state=status.state.value, reason=status.reason or None,
                                           attempt=status.attempt, retry_in_s=status.retry_in_s))
        if status.state is not SourceState.ONLINE:
            with self.state.lock:
                self.emitter.end_matches(self.state, self.state.last_frame, self.media_wall())
        if status.state in TERMINAL:
            self.final = status
            self.done.set()


def pick_stream(settings: Settings, name: Optional[str]) -> ResolvedStream:
    """The stream to scan: `name`, or the config's only stream; ConfigError (one line) otherwise."""
    from daemon.errors import ConfigError

    streams = {s.name: s for s in settings.resolved_streams()}
    if name is None:
        if len(streams) == 1:
            return next(iter(streams.values()))
        raise ConfigError("%s: %d streams; choose one with --stream (%s)"
                          % (settings.source_path, len(streams), ", ".join(streams)))
    if name not in streams:
        raise ConfigError("%s: no stream named %r (streams: %s)" % (settings.source_path, name, ", ".join(streams)))
    return streams[name]


def make_scanner(settings: Settings, stream: ResolvedStream) -> Scanner:
    """A Scanner with the config's model package and backend, running only this stream's tasks."""
    from blip.engine import Engine
    from blip.runtime import create_runtime, resolve_backend
    from daemon.service import load_package

    package = load_package(settings)
    tasks = tuple(task for task, on in (("caption", stream.caption.enabled), ("match", bool(stream.prompts)),
                                        ("answer", bool(stream.questions))) if on) or ("caption",)
    model = settings.model

    def engine() -> Any:
        runtime = create_runtime(resolve_backend(model.backend, package), device=model.device, threads=model.threads)
        return Engine(package, runtime, tasks=tasks)

    return Scanner(settings, stream, package, engine)
