"""StreamSet: a reload restarts streams that ended or failed; a stream back online re-sends its
state; files read with realtime: false get a waiting reader and no age limit."""
import shutil
import time
from pathlib import Path
from typing import Any, Callable, Dict, Iterator

import pytest
import yaml

from daemon.config.config import diff_streams, load_config
from daemon.counters import StreamCounters
from daemon.pipeline.emit import Emitter
from daemon.pipeline.scheduler import Scheduler
from daemon.pipeline.sources.supervisor import StreamStatus
from daemon.pipeline.streams import StreamSet
from daemon.states import SourceState
from tests.daemon.helpers_pipeline import Recorder


class Metrics:
    def watch(self, counters: StreamCounters, depth: Callable[[], int]) -> None:
        pass

    def unwatch(self, name: str) -> None:
        pass

    def set_state(self, name: str, state: str) -> None:
        pass


def write(path: Path, url: Path, **stream: Any) -> Path:
    entry: Dict[str, Any] = dict({"name": "cam", "url": str(url), "caption": {"enabled": True, "every_s": 1}}, **stream)
    path.write_text(yaml.safe_dump({
        "model": {"package": "/nonexistent/package"},
        "defaults": {"backoff_initial_s": 0.05, "backoff_max_s": 0.1},
        "streams": [entry],
    }))
    return path


@pytest.fixture
def stream_set() -> Iterator[StreamSet]:
    counters: Dict[str, StreamCounters] = {}
    scheduler = Scheduler(lambda name: counters.setdefault(name, StreamCounters(name)))
    publisher = Recorder()
    settings_stub = type("P", (), {"heartbeat_s": 10.0, "snapshot": type("S", (), {"enabled": False})()})()
    streams = StreamSet(scheduler, publisher, Emitter(publisher, settings_stub), Metrics())
    yield streams
    streams.stop_all(timeout=5)


def wait_state(streams: StreamSet, name: str, state: SourceState, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while streams._running[name].supervisor.status.state is not state:  # noqa: SLF001
        assert time.monotonic() < deadline, streams.summary()
        time.sleep(0.02)  # polling the reader thread's state


def test_a_reload_restarts_a_failed_stream_whose_file_was_fixed(stream_set: StreamSet, clips: Dict[str, Path],
                                                                 tmp_path: Path) -> None:
    """Defect: the stream stayed failed after SIGHUP (`0 changed, 1 unchanged`)."""
    broken = tmp_path / "clip.mp4"
    broken.write_bytes(b"")
    config = write(tmp_path / "blipd.yaml", broken)
    old = load_config(config)
    stream_set.apply(old)
    wait_state(stream_set, "cam", SourceState.FAILED)
    shutil.copyfile(str(clips["short"]), str(broken))
    new = load_config(config)
    diff = diff_streams(old, new)
    assert diff.unchanged == ("cam",)
    assert stream_set.apply(new, diff) == ["cam"]
    wait_state(stream_set, "cam", SourceState.ENDED)
    assert stream_set.counters_for("cam").get("decoded") == 10
    assert stream_set.apply(new, diff_streams(new, new)) == ["cam"], "an ended file is replayed too"


def test_a_reload_leaves_a_running_stream_alone(stream_set: StreamSet, clips: Dict[str, Path], tmp_path: Path) -> None:
    config = write(tmp_path / "blipd.yaml", clips["short"], loop=True)
    settings = load_config(config)
    stream_set.apply(settings)
    wait_state(stream_set, "cam", SourceState.ONLINE)
    supervisor = stream_set._running["cam"].supervisor  # noqa: SLF001
    assert stream_set.apply(settings, diff_streams(settings, settings)) == []
    assert stream_set._running["cam"].supervisor is supervisor  # noqa: SLF001


def test_back_online_the_next_caption_and_answers_are_due_and_resent(stream_set: StreamSet, clips: Dict[str, Path],
                                                                     tmp_path: Path) -> None:
    """Defect: after reconnecting a subscriber waited up to heartbeat_s for the current caption."""
    config = write(tmp_path / "blipd.yaml", clips["short"], loop=True, caption={"enabled": True, "every_s": 30},
                   questions=[{"id": "q", "text": "what?", "every_s": 30}])
    stream_set.apply(load_config(config))
    state = stream_set.state_of("cam")
    assert state is not None
    with state.lock:
        state.next_caption, state.last_caption_sent = 100.0, 90.0
        state.next_question["q"], state.last_answer_sent["q"] = 100.0, 90.0
    stream_set._on_state(StreamStatus("cam", SourceState.RECONNECTING, "lost"))  # noqa: SLF001
    assert state.next_caption == 100.0, "nothing changes during the outage"
    stream_set._on_state(StreamStatus("cam", SourceState.ONLINE, "opened"))  # noqa: SLF001
    assert state.next_caption == state.last_caption_sent == float("-inf")
    assert state.next_question["q"] == float("-inf") and state.last_answer_sent == {}


def test_realtime_false_files_wait_for_room_and_have_no_age_limit(stream_set: StreamSet, clips: Dict[str, Path],
                                                                  tmp_path: Path) -> None:
    config = write(tmp_path / "blipd.yaml", clips["moving"], realtime=False, sample_every_s=0.25, scene_change=0)
    stream_set.apply(load_config(config))
    scheduler = stream_set._scheduler  # noqa: SLF001
    taken = []
    deadline = time.monotonic() + 30
    supervisor = stream_set._running["cam"].supervisor  # noqa: SLF001
    while supervisor.status.state is not SourceState.ENDED or scheduler.depth():
        assert time.monotonic() < deadline, stream_set.summary()
        frame = scheduler.get(timeout=0.2)
        if frame is not None:
            taken.append(frame.pts_s)
            assert scheduler.depth_of("cam") == 0, "lockstep: one frame of the stream at a time"
            stream_set.state_of("cam").sampler.discarded(frame.index)  # as a worker does when done
    assert taken == pytest.approx([0.0, 0.28, 0.52, 0.76, 1.0, 1.28, 1.52, 1.76]), "every point of the pts grid"
    snap = stream_set.counters_for("cam").snapshot()
    assert snap["dropped"]["replaced"] == snap["dropped"]["too_old"] == 0  # type: ignore[index]


def test_stats_rates_after_a_restart_count_only_the_frames_since_the_last_stats(
        stream_set: StreamSet, clips: Dict[str, Path], tmp_path: Path) -> None:
    """Defect: a stream restarted by a reload began with an empty stats base while its counters
    go on, so its next stats event's fps_in counted every frame since boot."""
    stream_set._publisher.latency_summary = lambda name: None  # type: ignore[attr-defined]  # noqa: SLF001
    config = write(tmp_path / "blipd.yaml", clips["short"])
    settings = load_config(config)
    stream_set.apply(settings)
    wait_state(stream_set, "cam", SourceState.ENDED)
    (first,) = stream_set.stats_events(1.0)
    assert first.fps_in == 10
    assert stream_set.apply(settings, diff_streams(settings, settings)) == ["cam"]
    wait_state(stream_set, "cam", SourceState.ENDED)
    (second,) = stream_set.stats_events(1.0)
    assert second.decoded == 20
    assert second.fps_in == 10, "the 10 frames of the replay only"


def test_stopping_does_not_wait_forever_for_a_wedged_worker(stream_set: StreamSet, clips: Dict[str, Path],
                                                             tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Defect: stop waited without a timeout for the stream's lock, which a worker holds for as
    long as an inference runs: one wedged inference kept SIGTERM from ever finishing."""
    stream_set.apply(load_config(write(tmp_path / "blipd.yaml", clips["short"])))
    wait_state(stream_set, "cam", SourceState.ENDED)
    state = stream_set.state_of("cam")
    assert state is not None
    assert state.lock.acquire(timeout=5)  # a worker stuck in inference on one of its frames
    try:
        stream_set.stop_all(timeout=0.5)
    finally:
        state.lock.release()
    assert stream_set.names() == []
    assert any("still busy" in r.getMessage() for r in caplog.records)


def test_a_stream_that_cannot_start_leaves_the_others_running_and_a_reload_retries_it(
        stream_set: StreamSet, clips: Dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Defect: an exception while starting one stream escaped apply(): the streams after it never
    started, and the reload that hit it ended the daemon."""
    import daemon.pipeline.streams as streams_module

    real_spec = streams_module.source_spec

    def spec(cfg: Any, *args: Any) -> Any:
        if cfg.name == "bad":
            raise RuntimeError("no decoder for you")
        return real_spec(cfg, *args)

    config = tmp_path / "blipd.yaml"
    config.write_text(yaml.safe_dump({
        "model": {"package": "/nonexistent/package"},
        "streams": [{"name": name, "url": str(clips["short"]), "loop": True} for name in ("bad", "cam")],
    }))
    settings = load_config(config)
    monkeypatch.setattr(streams_module, "source_spec", spec)
    stream_set.apply(settings)
    wait_state(stream_set, "cam", SourceState.ONLINE)
    assert "bad" not in stream_set._running  # noqa: SLF001
    monkeypatch.setattr(streams_module, "source_spec", real_spec)
    assert stream_set.apply(settings, diff_streams(settings, settings)) == ["bad"]
    wait_state(stream_set, "bad", SourceState.ONLINE)
