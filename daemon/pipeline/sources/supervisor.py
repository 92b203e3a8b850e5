"""One reader thread per stream: open, read, sample, hand frames on; reconnect, stall watchdog, states.

Why a thread per stream: decoders block (an open of a dead camera takes up to its open timeout, a
read of a silent one up to its read timeout), and that must never delay another stream. OpenCV
still serialises *opens* behind a global lock: a network camera is therefore probed first
(daemon.pipeline.sources.probe, in `make_source`), so one that accepts TCP but never answers fails
within 2 s instead of holding every other stream's (re)open for its open timeout.

Policy:
- live streams reconnect forever with exponential backoff and jitter (daemon.pipeline.sources.backoff); the attempt
  counter resets once a connection stayed up for `healthy_after_s`;
- stall watchdog: the source's read timeout is lowered to `stall_timeout_s`, so a read on a silent
  camera returns within it; a read that returns (with or without a frame) after (about)
  `stall_timeout_s` without frames -> `stalled`, close and reopen.
  The watchdog needs no second thread (which could not interrupt a decoder safely anyway);
- files: `ended` at the end, or reopened from the start when `loop`; a file that cannot be opened or
  yields no frame is retried `file_retries` times with backoff (a file on a share being mounted),
  then `failed`; a decoder that is not installed fails at once;
- files are sampled on media time (daemon.pipeline.sources.mediatime: pts continued across loops;
  timestamps that go back or leap ahead start a new segment of the sampling grid, counted
  `pts_discontinuities`); with `realtime` they are paced to it so a demo plays at real speed;
  with `realtime: false` the sink waits for room (Scheduler.put(wait=True)), each frame carries
  its media time (Frame.media_s) and the next sampled frame goes on (through the scene gate) once
  the worker settled the previous one (Sampler lockstep), so the file is read as fast as the
  workers go and gives the same events at any speed and with any number of workers;
- undecodable packets are skipped by the sources and counted `undecodable` when the source closes;
- expected failures log one warning line; an unexpected exception is logged with its traceback the
  first time, then as one line, and handled like a read failure (reconnect).

Accounting per grabbed frame: `decoded`; then either drop `not_sampled` (between sample points,
never converted) or `sampled` (converted), and of those either drop `unchanged` (scene gate) or
handed to the sink (the scheduler), with the model pixel values the source computed on its device
when it offers them (`Source.pixels`, config `preprocess: tpu`).
"""
import dataclasses
import random
import threading
import time
from typing import Callable, Optional

from daemon.pipeline.sources.backoff import Backoff
from daemon.counters import StreamCounters
from daemon.pipeline.frames import Frame
from daemon.ops.logsetup import stream_logger
from daemon.pipeline.sampler import Sampler
from daemon.pipeline.sources.base import DecoderUnavailable, Source, SourceEnded, SourceError, SourceSpec
from daemon.pipeline.sources.factory import make_source
from daemon.pipeline.sources.mediatime import MediaClock
from daemon.states import TERMINAL, SourceState

__all__ = ["SourceState", "StreamStatus", "StreamSupervisor", "SupervisorPolicy", "TERMINAL"]

STALL_RATIO = 0.8
"""A failed read after this share of stall_timeout_s without frames counts as a stall (timer slack)."""

LOOP_PAUSE_S = 0.01
"""Least pause between two plays of a looping file, so a one-frame file cannot spin."""

SETTLE_POLL_S = 0.5
"""A realtime: false reader waiting for the worker re-checks its stop flag this often."""

REANCHOR_S = 1.0
"""A realtime file that fell this far behind its clock (slow decode) restarts its pacing clock."""


@dataclasses.dataclass(frozen=True)
class StreamStatus:
    """A state change, handed to `on_state` from the reader thread (or from stop()).

    reason:     one line, credentials redacted
    attempt:    reconnect attempt this delay is for (1, 2, ...); for `online`, the attempts it took
    retry_in_s: seconds until the next open, for `reconnecting` / `stalled`; else None
    """

    stream: str
    state: SourceState
    reason: str = ""
    attempt: int = 0
    retry_in_s: Optional[float] = None


@dataclasses.dataclass(frozen=True)
class SupervisorPolicy:
    stall_timeout_s: float = 10.0
    backoff_initial_s: float = 1.0
    backoff_max_s: float = 60.0
    healthy_after_s: float = 30.0
    file_retries: int = 2


class StreamSupervisor:
    """start() / stop(timeout) one stream's reader thread. A stopped supervisor is not restarted."""

    def __init__(self, spec: SourceSpec, sampler: Sampler, sink: Callable[[Frame], None],
                 counters: StreamCounters, on_state: Callable[[StreamStatus], None],
                 policy: SupervisorPolicy = SupervisorPolicy(),
                 source_factory: Callable[[SourceSpec], Source] = make_source,
                 rng: Optional[random.Random] = None,
                 clock: Callable[[], float] = time.monotonic,
                 wall_clock: Callable[[], float] = time.time) -> None:
        if spec.is_live:
            # The stall watchdog rides on the read timeout: no read may block longer than a stall.
            spec = dataclasses.replace(spec, read_timeout_s=min(spec.read_timeout_s, policy.stall_timeout_s))
        self.spec = spec
        self.name = spec.name
        self.policy = policy
        self._sampler = sampler
        self._sink = sink
        self._counters = counters
        self._on_state = on_state
        self._factory = source_factory
        self._backoff = Backoff(policy.backoff_initial_s, policy.backoff_max_s, rng)
        self._clock = clock
        self._wall = wall_clock
        self._log = stream_logger(__name__, spec.name)
        self._stop = threading.Event()
        self._state_lock = threading.RLock()  # on_state may call back into status
        self._status = StreamStatus(spec.name, SourceState.STARTING, "not started")
        self._traceback_logged = False
        self._media = MediaClock()
        self._wall_anchor: Optional[float] = None
        self._thread = threading.Thread(target=self._run, name="reader-%s" % spec.name, daemon=True)

    @property
    def status(self) -> StreamStatus:
        return self._status

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def start(self) -> None:
        if not self._stop.is_set() and self._thread.ident is None:
            self._thread.start()

    def stop(self, timeout: float = 5.0) -> bool:
        """Stop reading, close the source (in the reader thread), join. True when the thread ended."""
        self._stop.set()
        if threading.current_thread() is self._thread:  # called from on_state: the loop exits by itself
            return False
        if self._thread.ident is not None:
            self._thread.join(timeout)
        if self._thread.is_alive():
            # Blocked inside the decoder; it gives up within its open/read timeout (daemon thread).
            self._log.warning("stream %s: reader still blocked in the decoder after %.1f s", self.name, timeout)
        self._emit(SourceState.OFFLINE, "stopped")
        return not self._thread.is_alive()

    # -- reader thread -----------------------------------------------------------------

    def _run(self) -> None:
        try:
            self._emit(SourceState.STARTING, "opening %s" % self.spec.display_url)
            self._supervise()
        except Exception:  # the loop itself failed: keep the process, report the stream
            self._log.exception("stream %s: reader crashed", self.name)
            self._emit(SourceState.FAILED, "stream %s: reader crashed" % self.name)
        finally:
            if self._stop.is_set():
                self._emit(SourceState.OFFLINE, "stopped")

    def _supervise(self) -> None:
        file_failures = 0
        while not self._stop.is_set():
            started = self._clock()
            result = self._session()
            session_s = self._clock() - started
            if result is None:
                return
            if isinstance(result, SourceEnded):
                if not self.spec.loop:
                    self._log.info("%s", result)  # an operator sees why a file stopped (cut short?)
                    self._emit(SourceState.ENDED, str(result))
                    return
                self._log.debug("%s; looping", result)
                self._stop.wait(LOOP_PAUSE_S)
                continue
            if isinstance(result, DecoderUnavailable):
                self._fail(result)
                return
            if not self.spec.is_live:
                file_failures += 1
                if file_failures > self.policy.file_retries:
                    self._fail(result)
                    return
            self._retry(result, session_s)

    def _fail(self, error: SourceError) -> None:
        self._log.warning("%s; giving up", error)
        self._emit(SourceState.FAILED, str(error))

    def _retry(self, error: SourceError, session_s: float) -> None:
        if session_s >= self.policy.healthy_after_s:
            self._backoff.reset()
        delay = self._backoff.next_delay()
        stalled = isinstance(error, _Stalled)
        state = SourceState.STALLED if stalled else SourceState.RECONNECTING
        self._counters.add("reconnects")
        self._log.warning("%s; retry %d in %.1f s", error, self._backoff.attempt, delay)
        self._emit(state, str(error), self._backoff.attempt, round(delay, 3))
        self._stop.wait(delay)

    def _session(self) -> Optional[SourceError]:
        """Open, read until failure/end/stop, close. None when stopped."""
        source: Optional[Source] = None
        try:
            source = self._factory(self.spec)
            source.open()
            if self._stop.is_set():
                return None
            fps = source.fps
            self._sampler.reset()
            self._emit(SourceState.ONLINE, "opened %s%s" % (self.spec.display_url, " (%.3g fps)" % fps if fps else ""),
                       self._backoff.attempt)
            return self._read(source)
        except SourceError as exc:
            return exc
        except Exception as exc:  # decoder or sink bug: log it, then behave as after a read failure
            reason = "stream %s: unexpected %s: %s" % (self.name, type(exc).__name__, self.spec.clean(str(exc)))
            if not self._traceback_logged:
                self._traceback_logged = True
                self._log.exception("stream %s: unexpected error in the reader", self.name)
            return SourceError(reason)
        finally:
            if source is not None:
                self._close(source)
                self._count_skipped(source)

    def _close(self, source: Source) -> None:
        try:
            source.close()
        except Exception as exc:
            self._log.warning("stream %s: closing the source failed: %s", self.name, self.spec.clean(str(exc)))

    def _count_skipped(self, source: Source) -> None:
        skipped = source.skipped
        if skipped:
            self._counters.add("undecodable", skipped)

    def _read(self, source: Source) -> Optional[SourceError]:
        live = self.spec.is_live
        pace = (not live) and self.spec.realtime
        last_frame = self._clock()
        anchor: Optional[tuple] = None
        index = 0
        self._media.new_session(source.fps)
        while not self._stop.is_set():
            grabbed = source.grab()
            silent = self._clock() - last_frame
            if live and silent >= STALL_RATIO * self.policy.stall_timeout_s:
                # Also when grab() succeeded: after a read timeout FFmpeg flushes the frames still
                # in the decoder, one per timeout, which would hide a stall for several periods.
                return _Stalled("stream %s: no frame for %.1f s (stalled)" % (self.name, silent))
            if not grabbed:
                return source.end_reason()
            pts = source.pts_s
            media = pts
            if not live:
                media = self._media.advance(pts)
                if self._media.jumped:
                    self._new_segment(pts)
            if pace:
                anchor = self._pace(anchor, media)
                if anchor is None:
                    return None
            now = self._clock()
            last_frame = now
            self._counters.add("decoded")
            self._take(source, index, pts, media, now)
            index += 1
        return None

    def _new_segment(self, pts: float) -> None:
        """The file's timestamps went back (or leapt ahead): sample the new segment from its start."""
        self._counters.add("pts_discontinuities")
        self._sampler.reset()
        self._log.info("stream %s: timestamps jump to %.3f s: a new segment (media time %.3f s)", self.name, pts,
                       self._media.media_s)

    def _pace(self, anchor: Optional[tuple], media: float) -> Optional[tuple]:
        """Wait until `media` is due on the pacing clock; returns the (mono, media) anchor, None if stopped."""
        now = self._clock()
        if anchor is None or media < anchor[1]:
            return (now, media)
        delay = anchor[0] + (media - anchor[1]) - now
        if delay < -REANCHOR_S:
            return (now, media)
        if delay > 0 and self._stop.wait(delay):
            return None
        return anchor

    def _take(self, source: Source, index: int, pts: float, media: float, now: float) -> None:
        """Sampler decisions for one grabbed frame; a kept one goes to the sink.

        Files are sampled on media time (daemon.pipeline.sources.mediatime), live streams on the
        monotonic clock. A file read with `realtime: false` also runs its tasks and heartbeats on
        media time (Frame.media_s), and its frames' `time` is the stream's start plus media time,
        so the events do not depend on how fast the machine reads."""
        if not self._sampler.due(media, now, self.spec.is_live):
            self._counters.drop("not_sampled")
            return
        image = source.retrieve()
        if image is None:
            self._counters.drop("not_sampled")
            self._log.debug("stream %s: frame %d could not be converted", self.name, index)
            return
        self._counters.add("sampled")
        media_s = media if not (self.spec.is_live or self.spec.realtime) else None
        if media_s is not None:  # the gate decides on what the worker made of the previous frame
            while not self._sampler.wait_settled(SETTLE_POLL_S):
                if self._stop.is_set():
                    self._counters.drop("shutdown")  # sampled, never handed on
                    return
        if not self._sampler.changed(image, index, now if media_s is None else media_s):
            self._counters.drop("unchanged")
            return
        image.setflags(write=False)
        # after the scene gate: device preprocessing (`preprocess: tpu`) only for frames that go on
        pixels = source.pixels()
        if media_s is None:
            wall = self._wall()
        else:
            if self._wall_anchor is None:
                self._wall_anchor = self._wall() - media_s
            wall = self._wall_anchor + media_s
        self._sink(Frame(self.name, index, pts, wall, now, image, pixels or {}, media_s))

    def _emit(self, state: SourceState, reason: str, attempt: int = 0, retry_in_s: Optional[float] = None) -> None:
        """Publish a state change; after a terminal state nothing more is published."""
        status = StreamStatus(self.name, state, " ".join(reason.split()), attempt, retry_in_s)
        with self._state_lock:
            if self._status.state in TERMINAL:
                return
            if state is SourceState.ONLINE and self._status.state is SourceState.ONLINE:
                return  # a looping file reopened: subscribers saw no outage, publish none
            self._status = status
            try:
                self._on_state(status)
            except Exception:
                self._log.exception("stream %s: state callback failed", self.name)


class _Stalled(SourceError):
    """No frame for the stall timeout on a live stream."""
