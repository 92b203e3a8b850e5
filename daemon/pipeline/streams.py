"""The running streams: for each one its counters, reader (supervisor), scheduler slot and worker
state; added, removed and replaced as the config asks (start and SIGHUP).

A file read with `realtime: false` is read as fast as the workers take its frames: its reader
waits for room in its slot instead of replacing a frame, no frame is too old for it, and its
tasks run on media time (daemon.pipeline.frames.Frame.task_time), so its events are the same
whatever the machine's speed. A reload also restarts streams that `ended` or `failed` (a file
fixed in place, a decoder installed since) even when their config did not change.
"""
import functools
import logging
import threading
import time
from typing import Any, Dict, List, Optional

from daemon.config.config import ResolvedStream, Settings, StreamDiff
from daemon.counters import StreamCounters
from daemon.publish.events import StatsEvent, StreamEvent
from daemon.ops.logsetup import stream_logger
from daemon.pipeline.sampler import Sampler
from daemon.pipeline.sources.base import DevicePreprocess, SourceSpec
from daemon.pipeline.sources.supervisor import StreamStatus, StreamSupervisor, SupervisorPolicy
from daemon.pipeline.stream_state import StreamContext
from daemon.states import REVIVABLE, SourceState

log = logging.getLogger(__name__)


def device_preprocess(package: Any, stream: ResolvedStream) -> Optional[DevicePreprocess]:
    """What `preprocess: tpu` asks of the stream's decoder: pixel values at the image size of each
    task the stream runs (caption and match share one size, answer may have its own), normalised
    as the package says. None when the stream runs no task."""
    runs = (("caption", stream.caption.enabled), ("match", bool(stream.prompts)), ("answer", bool(stream.questions)))
    sizes = sorted({int(package.task(task).image_size) for task, on in runs if on and task in package.tasks})
    if not sizes:
        return None
    pp = package.preprocess
    return DevicePreprocess(tuple(sizes), tuple(pp.mean), tuple(pp.std), pp.interpolation)  # type: ignore[arg-type]


def source_spec(stream: ResolvedStream, device: int = 0, preprocess: Optional[DevicePreprocess] = None) -> SourceSpec:
    return SourceSpec(
        name=stream.name,
        url=stream.secret_url(),
        display_url=stream.display_url,
        is_live=stream.is_live,
        loop=stream.loop,
        decoder=stream.decoder,
        hwaccel=stream.hwaccel,
        open_timeout_s=stream.open_timeout_s,
        read_timeout_s=stream.read_timeout_s,
        realtime=stream.realtime,
        device=device,
        preprocess=preprocess,
    )


def supervisor_policy(stream: ResolvedStream) -> SupervisorPolicy:
    return SupervisorPolicy(
        stall_timeout_s=stream.stall_timeout_s,
        backoff_initial_s=stream.backoff_initial_s,
        backoff_max_s=stream.backoff_max_s,
    )


class _Running:
    """One started stream."""

    def __init__(self, config: ResolvedStream, state: StreamContext, supervisor: StreamSupervisor) -> None:
        self.config = config
        self.state = state
        self.supervisor = supervisor
        self.stats_snapshot: Dict[str, object] = {}


class StreamSet:
    """Owns the per-stream objects; the service calls it from the main thread only, the readers
    and workers reach it through `counters_for`, `state_of` and the state callbacks."""

    def __init__(self, scheduler, publisher, emitter, metrics, device: int = 0,  # type: ignore[no-untyped-def]
                 pixel_package: Any = None) -> None:
        self._device = device
        self._scheduler = scheduler
        self._publisher = publisher
        self._emitter = emitter
        self._metrics = metrics
        self._lock = threading.Lock()
        self._counters: Dict[str, StreamCounters] = {}
        self._running: Dict[str, _Running] = {}
        self._stopped: List[_Running] = []
        """What `stop_all` stopped, kept for the final stats (`stats_events(final=True)`)."""
        self._pixel_package = pixel_package
        """With `preprocess: tpu`, the service's model package (sizes, normalisation the decoders'
        devices compute); None otherwise. Like every `model` setting it changes at restart only."""

    def counters_for(self, name: str) -> StreamCounters:
        """Counters outlive a stream's removal so late events of it are still counted."""
        with self._lock:
            counters = self._counters.get(name)
            if counters is None:
                counters = self._counters[name] = StreamCounters(name)
            return counters

    def state_of(self, name: str) -> Optional[StreamContext]:
        with self._lock:
            running = self._running.get(name)
        return running.state if running is not None else None

    def names(self) -> List[str]:
        with self._lock:
            return list(self._running)

    # -- add / remove --------------------------------------------------------------------------
    def apply(self, settings: Settings, diff: Optional[StreamDiff] = None, stop_timeout: float = 5.0) -> List[str]:
        """Start every stream (diff None) or only what `diff` adds or changes, and restart the
        unchanged ones that ended or failed; the others keep running. Returns those restarted."""
        wanted = {s.name: s for s in settings.resolved_streams()}
        revived: List[str] = []
        if diff is None:
            to_stop, to_start = [], list(wanted)
        else:
            revived = [name for name in diff.unchanged if self._is_revivable(name)]
            to_stop = list(diff.removed) + list(diff.changed) + revived
            to_start = list(diff.added) + list(diff.changed) + revived
        for name in revived:
            with self._lock:
                running = self._running.get(name)
            if running is None:
                stream_logger(__name__, name).info("reload: starting stream %s (it could not start before)", name)
                continue
            status = running.supervisor.status
            stream_logger(__name__, name).info("reload: restarting stream %s (it was %s: %s)", name,
                                               status.state.value, status.reason)
        with self._lock:  # a restarted stream's rates go on from its last stats event, not from boot
            bases = {name: self._running[name].stats_snapshot for name in to_stop if name in self._running}
        self._stop_many(to_stop, stop_timeout)
        for name in to_start:
            try:
                self._start(wanted[name], bases.get(name))
            except Exception as exc:  # one stream that cannot start must not take the others with it
                stream_logger(__name__, name).error("stream %s could not start: %s", name,
                                                    str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
                self._abandon(name)
        return revived

    def _abandon(self, name: str) -> None:
        """Undo what a failed `_start` registered, so a later reload can start the stream afresh."""
        with self._lock:
            self._running.pop(name, None)
        for undo in (lambda: self._scheduler.remove_stream(name), lambda: self._metrics.unwatch(name)):
            try:
                undo()
            except Exception:  # nothing was registered yet
                pass

    def _is_revivable(self, name: str) -> bool:
        """Ended, failed, or never started (its start raised): a reload starts it again."""
        with self._lock:
            running = self._running.get(name)
        return running is None or running.supervisor.status.state in REVIVABLE

    def _start(self, cfg: ResolvedStream, stats_base: Optional[Dict[str, object]] = None) -> None:
        """stats_base: the counters as the stream's last stats event saw them (its counters outlive
        a restart); None: as they are now, so the first stats event's rates count only new frames."""
        counters = self.counters_for(cfg.name)
        state = StreamContext(cfg, counters, update_every_s=cfg.update_every_s)
        paced = cfg.is_live or cfg.realtime
        max_age_s = cfg.max_frame_age_s if paced else float("inf")  # realtime: false: every frame waits its turn
        self._scheduler.add_stream(cfg.name, slot_size=cfg.slot_size, max_frame_age_s=max_age_s)
        self._metrics.watch(counters, lambda name=cfg.name: self._scheduler.depth_of(name))
        state.sampler = sampler = Sampler(cfg.sample_every_s, scene_change=cfg.scene_change, max_skip_s=cfg.max_skip_s,
                                          pending_s=max_age_s, lockstep=not paced)
        preprocess = device_preprocess(self._pixel_package, cfg) if self._pixel_package is not None else None
        supervisor = StreamSupervisor(
            source_spec(cfg, self._device, preprocess),
            sampler,
            self._scheduler.put if paced else functools.partial(self._scheduler.put, wait=True),
            counters,
            self._on_state,
            policy=supervisor_policy(cfg),
        )
        running = _Running(cfg, state, supervisor)
        running.stats_snapshot = counters.snapshot() if stats_base is None else stats_base
        with self._lock:
            self._running[cfg.name] = running
        stream_logger(__name__, cfg.name).info("starting stream %s (%s)", cfg.name, cfg.display_url)
        supervisor.start()

    def _stop_many(self, names: List[str], timeout: float) -> None:
        """Stop readers in parallel: a reader blocked in a dead camera's open must not delay the others."""
        with self._lock:
            running = [self._running.pop(n) for n in names if n in self._running]
        for r in running:
            self._scheduler.release(r.config.name)  # a reader waiting for room lets go
        stoppers = [threading.Thread(target=r.supervisor.stop, args=(timeout,), daemon=True) for r in running]
        for t in stoppers:
            t.start()
        deadline = time.monotonic() + timeout + 0.5
        for t in stoppers:
            t.join(max(0.0, deadline - time.monotonic()))
        for r in running:
            self._scheduler.remove_stream(r.config.name)
            # waits for a worker finishing a frame of this stream, but not for a wedged inference
            if r.state.lock.acquire(timeout=max(0.1, deadline - time.monotonic())):
                try:
                    self._emitter.end_matches(r.state, r.state.last_frame, time.time())
                finally:
                    r.state.lock.release()
            else:
                stream_logger(__name__, r.config.name).warning(
                    "stream %s: a worker is still busy with one of its frames; its active matches are not ended",
                    r.config.name)
            self._metrics.unwatch(r.config.name)

    def stop_all(self, timeout: float) -> None:
        with self._lock:
            self._stopped = list(self._running.values())
        self._stop_many(self.names(), timeout)

    # -- callbacks from reader threads -------------------------------------------------------------
    def _on_state(self, status: StreamStatus) -> None:
        """Publish the change; after the last frame of a stream, end its active matches; once it
        is online again, re-send its caption and answers (StreamContext.back_online)."""
        self._metrics.set_state(status.stream, status.state.value)
        if status.state is SourceState.STARTING:
            return
        self._publisher.publish(
            StreamEvent.now(
                status.stream,
                state=status.state.value,
                reason=status.reason or None,
                attempt=status.attempt,
                retry_in_s=status.retry_in_s,
            )
        )
        state = self.state_of(status.stream)  # None once the stream is being removed
        if state is None:
            return
        with state.lock:
            if status.state is SourceState.ONLINE:
                state.back_online()
            else:
                self._emitter.end_matches(state, state.last_frame, time.time())

    # -- stats / status ----------------------------------------------------------------------------
    def stats_events(self, interval_s: float, final: bool = False) -> List[StatsEvent]:
        """One stats event per running stream; `final`: per stream `stop_all` stopped, once the
        workers are done, so subscribers get the closing counts."""
        with self._lock:
            running = list(self._stopped if final else self._running.values())
        events = []
        for r in running:
            snapshot = r.state.counters.snapshot()
            events.append(
                StatsEvent.from_counters(
                    r.config.name,
                    snapshot,
                    r.stats_snapshot,
                    interval_s,
                    self._scheduler.depth_of(r.config.name),
                    self._publisher.latency_summary(r.config.name),
                )
            )
            r.stats_snapshot = snapshot
        return events

    def summary(self) -> str:
        """One line for systemd's STATUS=: stream states and totals."""
        with self._lock:
            running = list(self._running.values())
        states: Dict[str, int] = {}
        inferred = dropped = 0
        for r in running:
            key = r.supervisor.status.state.value
            states[key] = states.get(key, 0) + 1
            snap = r.state.counters.snapshot()
            inferred += int(snap.get("inferred", 0))  # type: ignore[call-overload]
            dropped += sum(snap.get("dropped", {}).values())  # type: ignore[union-attr]
        parts = ", ".join("%d %s" % (n, s) for s, n in sorted(states.items())) or "no streams"
        return "%d stream(s): %s; inferred %d, dropped %d" % (len(running), parts, inferred, dropped)

