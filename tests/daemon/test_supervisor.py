"""Stream supervisor: states, reconnect with backoff, stall watchdog, files ending/looping/failing,
isolation between streams. Real files and a real RTSP server; short timeouts keep it quick."""
import functools
import importlib.util
import logging
import random
import socket
import threading
import time
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional

import numpy as np
import pytest

from daemon.pipeline.sources.backoff import Backoff
from daemon.counters import StreamCounters
from daemon.pipeline.frames import Frame
from daemon.pipeline.sampler import Sampler
from daemon.pipeline.sources.base import Source, SourceEnded, SourceError, SourceSpec
from daemon.pipeline.sources.probe import probe
from daemon.pipeline.sources.supervisor import SourceState, StreamStatus, StreamSupervisor, SupervisorPolicy
from tests.rtsp import RtspServer, closed_port

HAVE_AV = importlib.util.find_spec("av") is not None
FAST = SupervisorPolicy(stall_timeout_s=2.0, backoff_initial_s=0.1, backoff_max_s=0.8, file_retries=2)
S = SourceState


class Recorder:
    """Collects states and frames of one supervisor; wait() polls a condition with a deadline."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.states: List[StreamStatus] = []
        self.frames: List[Frame] = []

    def on_state(self, status: StreamStatus) -> None:
        with self.cond:
            self.states.append(status)
            self.cond.notify_all()

    def sink(self, frame: Frame) -> None:
        with self.cond:
            self.frames.append(frame)
            self.cond.notify_all()

    def wait(self, predicate: Callable[[], bool], timeout: float = 30.0, what: str = "") -> None:
        deadline = time.monotonic() + timeout
        with self.cond:
            while not predicate():
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError("timed out waiting for %s; states: %s" % (what, self.names()))
                self.cond.wait(left)

    def names(self) -> List[str]:
        return [s.state.value for s in self.states]

    def count(self, state: SourceState) -> int:
        return sum(1 for s in self.states if s.state is state)


def supervise(spec: SourceSpec, policy: SupervisorPolicy = FAST, every_s: float = 0.0,
              factory: Optional[Callable[[SourceSpec], Source]] = None):  # type: ignore[no-untyped-def]
    rec = Recorder()
    counters = StreamCounters(spec.name)
    kwargs = {"source_factory": factory} if factory else {}
    sup = StreamSupervisor(spec, Sampler(every_s), rec.sink, counters, rec.on_state, policy, **kwargs)  # type: ignore[arg-type]
    return sup, rec, counters


@pytest.fixture
def started() -> Iterator[List[StreamSupervisor]]:
    """Supervisors a test starts; stopped after it whatever happens."""
    sups: List[StreamSupervisor] = []
    yield sups
    for sup in sups:
        sup.stop(timeout=10)


def file_spec(path: Path, **kw: object) -> SourceSpec:
    base = dict(name="clip", url=str(path), is_live=False, realtime=False, open_timeout_s=5.0, read_timeout_s=5.0)
    base.update(kw)
    return SourceSpec(**base)  # type: ignore[arg-type]


def live_spec(url: str, name: str = "cam", timeout_s: float = 2.0, decoder: str = "auto") -> SourceSpec:
    return SourceSpec(name=name, url=url, is_live=True, open_timeout_s=timeout_s, read_timeout_s=timeout_s, decoder=decoder)


# -- backoff ------------------------------------------------------------------------------------


def test_backoff_doubles_its_floor_caps_and_resets() -> None:
    backoff = Backoff(initial=1.0, cap=60.0, rng=random.Random(7))
    delays = [backoff.next_delay() for _ in range(10)]
    ceilings = [1, 2, 4, 8, 16, 32, 60, 60, 60, 60]
    assert all(c / 2 <= d <= c for d, c in zip(delays, ceilings))
    assert backoff.attempt == 10
    backoff.reset()
    assert backoff.attempt == 0 and backoff.next_delay() <= 1.0
    full = Backoff(initial=1.0, cap=4.0, rng=random.Random(1), floor_ratio=0.0)
    assert min(full.next_delay() for _ in range(200)) < 0.5  # full jitter can draw near zero
    with pytest.raises(ValueError):
        Backoff(initial=2.0, cap=1.0)


# -- files ------------------------------------------------------------------------------------


def test_file_plays_to_its_end(clips: Dict[str, Path], started: List[StreamSupervisor]) -> None:
    sup, rec, counters = supervise(file_spec(clips["moving"]), every_s=0.5)
    started.append(sup)
    sup.start()
    rec.wait(lambda: rec.count(S.ENDED) == 1, what="ended")
    assert rec.names() == ["starting", "online", "ended"]
    assert "after 50 frames" in rec.states[-1].reason
    assert [f.pts_s for f in rec.frames] == pytest.approx([0.0, 0.52, 1.0, 1.52])  # no frame at 0.5 s (25 fps)
    assert all(f.image.shape == (240, 320, 3) and not f.image.flags.writeable for f in rec.frames)
    snap = counters.snapshot()
    assert snap["decoded"] == 50 and snap["sampled"] == 4 and snap["dropped"]["not_sampled"] == 46  # type: ignore[index]
    assert sup.stop(timeout=5) and rec.names()[-1] == "ended"  # terminal: no "offline" after it


def test_looping_file_restarts_from_zero(clips: Dict[str, Path], started: List[StreamSupervisor]) -> None:
    sup, rec, _ = supervise(file_spec(clips["short"], loop=True))
    started.append(sup)
    sup.start()
    rec.wait(lambda: sum(1 for f in rec.frames if f.index == 0) >= 3, what="three plays")
    assert sup.stop(timeout=5)
    first_play = [f.pts_s for f in rec.frames[:10]]
    assert first_play == pytest.approx([i / 10 for i in range(10)])
    assert rec.names()[:2] == ["starting", "online"] and rec.names()[-1] == "offline"
    assert S.ENDED not in [s.state for s in rec.states]


def test_realtime_file_is_paced_to_its_timestamps(clips: Dict[str, Path], started: List[StreamSupervisor]) -> None:
    sup, rec, _ = supervise(file_spec(clips["short"], realtime=True))
    started.append(sup)
    sup.start()
    rec.wait(lambda: rec.count(S.ENDED) == 1, what="ended")
    first = rec.frames[0]
    for frame in rec.frames:  # pacing never hands a frame out before its time (a lower bound only)
        assert frame.mono_time - first.mono_time >= frame.pts_s - first.pts_s - 1e-3


def test_missing_file_fails_after_a_few_retries(tmp_path: Path, started: List[StreamSupervisor]) -> None:
    sup, rec, counters = supervise(file_spec(tmp_path / "nope.mp4"))
    started.append(sup)
    sup.start()
    rec.wait(lambda: rec.count(S.FAILED) == 1, what="failed")
    assert rec.names() == ["starting", "reconnecting", "reconnecting", "failed"]
    assert rec.states[-1].reason == "stream clip: cannot open %s: no such file" % (tmp_path / "nope.mp4")
    assert [s.attempt for s in rec.states[1:3]] == [1, 2]
    assert counters.get("reconnects") == 2
    assert not sup.alive or sup.stop(timeout=5)


def test_unavailable_decoder_fails_at_once(clips: Dict[str, Path], started: List[StreamSupervisor]) -> None:
    sup, rec, _ = supervise(file_spec(clips["short"], decoder="no-such-decoder"))
    started.append(sup)
    sup.start()
    rec.wait(lambda: rec.count(S.FAILED) == 1, what="failed")
    assert rec.names() == ["starting", "failed"] and "unknown decoder" in rec.states[-1].reason


# -- fakes: what real decoders rarely do on cue -----------------------------------------------


class ScriptedSource(Source):
    """Endless 4x4 frames at 100 fps; `open_gate` makes open() block until set (a decoder ignoring stop)."""

    def __init__(self, spec: SourceSpec, open_gate: Optional[threading.Event] = None) -> None:
        super().__init__(spec)
        self.open_gate = open_gate
        self.n = 0

    def open(self) -> None:
        if self.open_gate is not None:
            self.open_gate.wait(30)

    def grab(self) -> bool:
        self.n += 1
        return True

    def retrieve(self) -> Optional[np.ndarray]:
        return np.full((4, 4, 3), self.n % 256, np.uint8)

    def end_reason(self) -> SourceError:
        return SourceEnded("end")

    @property
    def pts_s(self) -> float:
        return self.n / 100

    @property
    def fps(self) -> Optional[float]:
        return 100.0

    def close(self) -> None:
        pass


def test_unexpected_error_is_logged_once_with_traceback_then_reconnects(
        caplog: pytest.LogCaptureFixture, started: List[StreamSupervisor]) -> None:
    rec = Recorder()

    def broken_sink(frame: Frame) -> None:
        raise RuntimeError("sink bug")

    spec = SourceSpec(name="cam", url="rtsp://u:pw@example.invalid/x")
    sup = StreamSupervisor(spec, Sampler(0.0), broken_sink, StreamCounters("cam"), rec.on_state, FAST,
                           source_factory=ScriptedSource)
    started.append(sup)
    with caplog.at_level(logging.WARNING, logger="daemon.pipeline.sources.supervisor"):
        sup.start()
        rec.wait(lambda: rec.count(S.RECONNECTING) >= 3, what="three reconnects")
        sup.stop(timeout=5)
    with_traceback = [r for r in caplog.records if r.exc_info]
    assert len(with_traceback) == 1
    assert rec.states[2].reason == "stream cam: unexpected RuntimeError: sink bug"
    assert all("pw" not in r.getMessage() for r in caplog.records)


def test_stop_returns_even_when_the_decoder_hangs(started: List[StreamSupervisor]) -> None:
    gate = threading.Event()
    rec = Recorder()
    spec = SourceSpec(name="cam", url="rtsp://example.invalid/x")
    sup = StreamSupervisor(spec, Sampler(0.0), rec.sink, StreamCounters("cam"), rec.on_state, FAST,
                           source_factory=lambda s: ScriptedSource(s, gate))
    sup.start()
    rec.wait(lambda: rec.count(S.STARTING) == 1, what="starting")
    assert sup.stop(timeout=0.2) is False  # still inside open(): reported, not waited for
    assert rec.names() == ["starting", "offline"]
    gate.set()
    sup._thread.join(timeout=10)
    assert not sup.alive and rec.names() == ["starting", "offline"] and not rec.frames
    assert sup.stop(timeout=1)  # idempotent


# -- live streams -------------------------------------------------------------------------------


def test_closed_port_backs_off_growing_and_capped_and_stops_promptly(started: List[StreamSupervisor]) -> None:
    policy = SupervisorPolicy(stall_timeout_s=2.0, backoff_initial_s=0.05, backoff_max_s=0.4)
    sup, rec, _ = supervise(live_spec("rtsp://u:pw@127.0.0.1:%d/cam" % closed_port()), policy)
    started.append(sup)
    sup.start()
    rec.wait(lambda: rec.count(S.RECONNECTING) >= 6, what="six attempts")
    assert sup.stop(timeout=5)
    tries = [s for s in rec.states if s.state is S.RECONNECTING][:6]
    assert [s.attempt for s in tries] == [1, 2, 3, 4, 5, 6]
    for s in tries:
        ceiling = min(0.4, 0.05 * 2 ** (s.attempt - 1))
        assert s.retry_in_s is not None and ceiling / 2 <= s.retry_in_s <= ceiling
        assert "pw" not in s.reason and "stream cam: cannot open" in s.reason
    assert rec.names()[0] == "starting" and rec.names()[-1] == "offline"


@pytest.mark.integration
def test_reconnects_after_the_server_dies_and_returns(rtsp_server: RtspServer, started: List[StreamSupervisor]) -> None:
    sup, rec, counters = supervise(live_spec(rtsp_server.url("live"), timeout_s=5.0))
    started.append(sup)
    sup.start()
    rec.wait(lambda: len(rec.frames) >= 5, what="frames")
    rtsp_server.kill()
    rec.wait(lambda: rec.count(S.RECONNECTING) >= 2, what="reconnecting")
    rtsp_server.restart()
    before = len(rec.frames)
    rec.wait(lambda: rec.count(S.ONLINE) == 2 and len(rec.frames) > before + 5, what="back online")
    names = rec.names()
    assert names[:2] == ["starting", "online"]
    assert set(names[2:names.index("online", 2)]) == {"reconnecting"}
    assert all(s.retry_in_s for s in rec.states if s.state is S.RECONNECTING)
    assert counters.get("reconnects") >= 2


@pytest.mark.integration
@pytest.mark.parametrize("decoder", [
    "auto", pytest.param("pyav", marks=pytest.mark.skipif(not HAVE_AV, reason="PyAV (av) not installed"))])
def test_silent_camera_stalls_then_recovers(rtsp_server: RtspServer, started: List[StreamSupervisor], decoder: str) -> None:
    sup, rec, _ = supervise(live_spec(rtsp_server.url("live"), timeout_s=2.0, decoder=decoder))
    started.append(sup)
    sup.start()
    rec.wait(lambda: len(rec.frames) >= 5, what="frames")
    rtsp_server.pause()
    try:
        rec.wait(lambda: rec.count(S.STALLED) == 1, what="stalled")
    finally:
        rtsp_server.resume()
    before = len(rec.frames)
    rec.wait(lambda: rec.count(S.ONLINE) == 2 and len(rec.frames) > before + 5, what="recovered")
    stalled = next(s for s in rec.states if s.state is S.STALLED)
    assert "no frame for" in stalled.reason and stalled.retry_in_s is not None
    assert rec.names()[:3] == ["starting", "online", "stalled"]


@pytest.mark.integration
def test_a_dead_camera_does_not_delay_a_live_one(rtsp_server: RtspServer, started: List[StreamSupervisor]) -> None:
    dead, dead_rec, _ = supervise(live_spec("rtsp://127.0.0.1:%d/x" % closed_port(), name="dead"),
                                  SupervisorPolicy(backoff_initial_s=0.05, backoff_max_s=0.2))
    live, live_rec, _ = supervise(live_spec(rtsp_server.url("live"), name="live", timeout_s=5.0))
    started.extend([dead, live])
    dead.start()
    live.start()
    live_rec.wait(lambda: len(live_rec.frames) >= 3, what="live frames")
    for attempts in (3, 6, 9):  # frames keep coming while the dead one retries
        dead_rec.wait(lambda: dead_rec.count(S.RECONNECTING) >= attempts, what="dead retries")
        mark = len(live_rec.frames)
        live_rec.wait(lambda: len(live_rec.frames) > mark, what="live frames after %d retries" % attempts)
    assert S.ONLINE not in [s.state for s in dead_rec.states]
    assert live_rec.names() == ["starting", "online"]


# -- a camera that accepts TCP but never answers ------------------------------------------------

SILENT_OPEN_TIMEOUT_S = 20.0


@pytest.fixture
def silent_camera() -> Iterator[str]:
    """A TCP port whose kernel completes every handshake while nobody ever answers."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    try:
        yield "rtsp://viewer:pw@127.0.0.1:%d/stream1" % listener.getsockname()[1]
    finally:
        listener.close()


def test_the_probe_tells_a_silent_camera_from_a_talking_one(silent_camera: str, rtsp_server: RtspServer) -> None:
    probe(rtsp_server.url("live"), 2.0)
    with pytest.raises(SourceError, match="no answer within 0.3 s"):
        probe(silent_camera, 0.3)
    with pytest.raises(SourceError, match="refused"):
        probe("rtsp://127.0.0.1:%d/x" % closed_port(), 0.3)
    with socket.socket() as rude:  # closes every connection at once: alive, the decoder judges it
        rude.bind(("127.0.0.1", 0))
        rude.listen(4)
        closer = threading.Thread(target=lambda: rude.accept()[0].close(), daemon=True)
        closer.start()
        probe("http://127.0.0.1:%d/video" % rude.getsockname()[1], 2.0)
        closer.join(5)


def test_a_silent_camera_does_not_hold_another_streams_open(silent_camera: str, rtsp_server: RtspServer,
                                                           started: List[StreamSupervisor]) -> None:
    """Defect: OpenCV serialises opens, so a camera that accepts TCP and never answers held every
    other stream's (re)open for its whole open timeout. Now it fails the probe within 2 s and the
    other stream opens meanwhile; the silent one keeps retrying (and never leaks its password)."""
    silent, silent_rec, _ = supervise(live_spec(silent_camera, name="silent", timeout_s=SILENT_OPEN_TIMEOUT_S),
                                      SupervisorPolicy(backoff_initial_s=0.05, backoff_max_s=0.1))
    live, live_rec, _ = supervise(live_spec(rtsp_server.url("live"), name="live", timeout_s=5.0))
    started.extend([silent, live])
    silent.start()
    began = time.monotonic()
    live.start()
    live_rec.wait(lambda: live_rec.count(S.ONLINE) == 1, timeout=SILENT_OPEN_TIMEOUT_S + 10, what="live online")
    waited = time.monotonic() - began
    silent_rec.wait(lambda: silent_rec.count(S.RECONNECTING) >= 2, what="silent retries")
    print("live stream online %.2f s after it started beside a silent camera" % waited)
    assert waited < SILENT_OPEN_TIMEOUT_S / 2, "the live stream waited behind the silent camera's open"
    reasons = [s.reason for s in silent_rec.states if s.state is S.RECONNECTING]
    assert all("no answer within 2.0 s" in r and "pw" not in r for r in reasons), reasons


# -- odd files and realtime: false ---------------------------------------------------------------


def test_timestamps_that_start_over_begin_a_new_segment(tmp_path: Path, started: List[StreamSupervisor]) -> None:
    """Defect: a file of two joined recordings was sampled in its first half only (the second
    counted not_sampled) and reported as a normal end."""
    from tests import media

    joined = media.make_concatenated(tmp_path / "joined.ts", 3, parts=2)
    sup, rec, counters = supervise(file_spec(joined), every_s=1.0)
    started.append(sup)
    sup.start()
    rec.wait(lambda: rec.count(S.ENDED) == 1, what="ended")
    assert [round(f.pts_s, 2) for f in rec.frames] == [0.0, 1.0, 2.0, 0.0, 1.0, 2.0]
    snap = counters.snapshot()
    assert snap["pts_discontinuities"] == 1 and snap["sampled"] == 6
    media_s = [f.media_s for f in rec.frames]
    assert media_s == pytest.approx([0.0, 1.0, 2.0, 3.0, 4.0, 5.0], abs=0.05), "media time goes on"


def test_a_damaged_file_is_read_past_the_damage(tmp_path: Path, started: List[StreamSupervisor]) -> None:
    """Defect: a corrupt region ended the file there; now the rest is read, the skipped packets are
    counted and the `ended` reason says how many frames were lost."""
    from tests import media

    whole = media.make_clip(tmp_path / "whole.mp4", 20, fps=25, size=(160, 120))
    sup, rec, counters = supervise(file_spec(media.make_corrupted(whole, tmp_path / "corrupt.mp4")), every_s=1.0)
    started.append(sup)
    sup.start()
    rec.wait(lambda: rec.count(S.ENDED) == 1, what="ended")
    assert rec.frames[-1].pts_s >= 18.0
    assert counters.get("undecodable") > 0
    assert "frame(s) lost" in rec.states[-1].reason


def test_realtime_false_hands_on_every_sample_point_to_a_slow_consumer(clips: Dict[str, Path],
                                                                      started: List[StreamSupervisor]) -> None:
    """The reader waits for room (Scheduler.put(wait=True)) instead of replacing frames: every
    sample point on the pts grid reaches the worker, with media time on it."""
    from daemon.pipeline.scheduler import Scheduler

    counters = StreamCounters("clip")
    scheduler = Scheduler(lambda name: counters)
    scheduler.add_stream("clip", slot_size=1, max_frame_age_s=float("inf"))
    rec = Recorder()
    spec = file_spec(clips["moving"])
    sup = StreamSupervisor(spec, Sampler(0.2), functools.partial(scheduler.put, wait=True), counters, rec.on_state,
                           FAST)
    started.append(sup)
    sup.start()
    taken: List[Frame] = []
    while rec.count(S.ENDED) == 0 or scheduler.depth_of("clip"):
        got = scheduler.get(timeout=0.5)
        if got is not None:
            taken.append(got)
            time.sleep(0.02)  # a slow worker
    assert [f.pts_s for f in taken] == pytest.approx([0.0, 0.2, 0.4, 0.6, 0.8, 1.0, 1.2, 1.4, 1.6, 1.8])
    assert [f.media_s for f in taken] == [f.pts_s for f in taken]
    snap = counters.snapshot()
    assert sum(snap["dropped"].values()) == snap["dropped"]["not_sampled"] == 40  # type: ignore[union-attr]


def test_realtime_false_a_frame_waiting_for_the_worker_at_stop_is_counted_shutdown(
        clips: Dict[str, Path], started: List[StreamSupervisor]) -> None:
    """Defect: a sampled frame the reader held while waiting for the worker to settle the previous
    one was given up at stop without a drop reason (sampled, then nothing)."""
    rec = Recorder()
    counters = StreamCounters("clip")
    sampler = Sampler(0.0, lockstep=True)  # the worker never reports: the 2nd frame waits
    sup = StreamSupervisor(file_spec(clips["short"]), sampler, rec.sink, counters, rec.on_state, FAST)
    started.append(sup)
    sup.start()
    deadline = time.monotonic() + 30
    while counters.get("sampled") < 2:
        assert time.monotonic() < deadline, "the reader never sampled a second frame"
        time.sleep(0.01)  # polling the reader thread's counters
    assert sup.stop(timeout=10)
    snap = counters.snapshot()
    assert len(rec.frames) == 1
    assert snap["dropped"]["shutdown"] == 1  # type: ignore[index]
    assert snap["sampled"] == len(rec.frames) + snap["dropped"]["shutdown"]  # type: ignore[index]
