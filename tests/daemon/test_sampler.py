"""Sampler: rate by stream time (files) or wall time (live), scene-change gate, max skip."""
from pathlib import Path
from typing import Dict, List, Tuple

import numpy as np
import pytest

from daemon.pipeline.sampler import Sampler
from daemon.pipeline.sources.base import SourceSpec
from daemon.pipeline.sources.opencv_source import OpenCVSource


def due_indices(sampler: Sampler, pts: List[float]) -> List[int]:
    return [i for i, t in enumerate(pts) if sampler.due(t, now_mono=1e9, is_live=False)]


def test_files_sample_by_pts() -> None:
    pts = [i / 25 for i in range(100)]
    assert due_indices(Sampler(every_s=1.0), pts) == [0, 25, 50, 75]
    assert due_indices(Sampler(every_s=0.0), pts[:5]) == [0, 1, 2, 3, 4]


def test_pts_that_jump_ahead_restart_the_grid() -> None:
    sampler = Sampler(every_s=1.0)
    assert due_indices(sampler, [0.0, 0.5, 1.0, 5.3, 5.9, 6.2, 6.4]) == [0, 2, 3, 6]


def test_a_looping_file_is_sampled_again_from_its_start() -> None:
    sampler = Sampler(every_s=1.0)
    first = [i / 10 for i in range(15)]
    assert due_indices(sampler, first + first) == [0, 10, 15, 25]


def test_live_streams_sample_by_wall_time_not_pts() -> None:
    now = [100.0]
    sampler = Sampler(every_s=2.0, clock=lambda: now[0])
    kept = []
    for i in range(12):
        now[0] = 100.0 + i * 0.5
        kept.append(sampler.due(pts_s=0.0, is_live=True))  # a camera whose pts never moves
    assert [i for i, k in enumerate(kept) if k] == [0, 4, 8]


def decode_every(path: Path, every_s: float) -> List[Tuple[float, np.ndarray]]:
    source = OpenCVSource(SourceSpec(name="t", url=str(path), is_live=False))
    source.open()
    frames = []
    sampler = Sampler(every_s=every_s)
    try:
        while source.grab():
            if sampler.due(source.pts_s, is_live=False):
                image = source.retrieve()
                assert image is not None
                frames.append((source.pts_s, image))
    finally:
        source.close()
    return frames


def gate(frames: List[Tuple[float, np.ndarray]], **kw: float) -> List[float]:
    """pts of the frames the scene gate lets through, each inferred at once (as by an idle worker)."""
    sampler = Sampler(every_s=0.0, **kw)
    kept = []
    for index, (pts, image) in enumerate(frames):
        if sampler.due(pts, is_live=False) and sampler.changed(image, index):
            sampler.inferred(index)
            kept.append(pts)
    return kept


def test_scene_gate_drops_a_static_scene_and_keeps_a_moving_one(clips: Dict[str, Path]) -> None:
    static = decode_every(clips["static"], 1.0)
    moving = decode_every(clips["moving"], 1.0)
    assert len(static) == 4 and len(moving) == 2
    assert gate(static, scene_change=0.02) == [0.0]
    assert gate(moving, scene_change=0.02) == [0.0, 1.0]
    assert gate(static, scene_change=0.0) == [0.0, 1.0, 2.0, 3.0]  # gate off


def test_max_skip_lets_an_unchanged_frame_through(clips: Dict[str, Path]) -> None:
    static = decode_every(clips["static"], 0.5)
    assert gate(static, scene_change=0.02, max_skip_s=2.0) == [0.0, 2.0]
    assert gate(static, scene_change=0.02, max_skip_s=1.0) == [0.0, 1.0, 2.0, 3.0]


def test_scene_gate_catches_a_slow_drift() -> None:
    """A slow drift is caught once it adds up, even if each step is below the threshold."""
    sampler = Sampler(every_s=0.0, scene_change=0.05)
    kept = []
    for step in range(10):
        image = np.full((36, 64, 3), 100 + 4 * step, np.uint8)  # 4/255 = 0.016 per step
        sampler.due(float(step), is_live=False)
        kept.append(sampler.changed(image, step))
        if kept[-1]:
            sampler.inferred(step)
    assert [i for i, k in enumerate(kept) if k] == [0, 4, 8]


def test_reset_forgets_schedule_and_image() -> None:
    sampler = Sampler(every_s=10.0, scene_change=0.5)
    image = np.zeros((10, 10, 3), np.uint8)
    assert sampler.due(0.0) and sampler.changed(image)
    assert not sampler.due(1.0)
    sampler.reset()
    assert sampler.due(1.0) and sampler.changed(image)


def test_negative_settings_are_refused() -> None:
    with pytest.raises(ValueError):
        Sampler(every_s=-1.0)


def test_gate_compares_with_the_last_inferred_frame_not_the_last_let_through() -> None:
    """A changed frame that is let through but never inferred (dropped as too old) must not become
    the reference: the next identical frame still counts as changed."""
    import numpy as np

    from daemon.pipeline.sampler import Sampler

    sampler = Sampler(every_s=0, scene_change=0.05, max_skip_s=100)
    dark = np.zeros((36, 64, 3), np.uint8)
    bright = np.full((36, 64, 3), 200, np.uint8)
    sampler.due(0.0)
    assert sampler.changed(dark, 0)
    sampler.inferred(0)
    sampler.due(1.0)
    assert not sampler.changed(dark, 1), "same as the inferred frame"
    sampler.due(2.0)
    assert sampler.changed(bright, 2)  # let through, then dropped before inference
    sampler.due(3.0)
    assert sampler.changed(bright, 3), "still different from what was last inferred"
    sampler.inferred(3)
    sampler.due(4.0)
    assert not sampler.changed(bright, 4)


def test_a_frame_like_the_one_still_on_its_way_is_unchanged() -> None:
    """A static scene's second sample, taken while the first is still queued or in inference, is
    skipped; once that first frame is discarded (nothing due, failed) or older than `pending_s`
    (dropped as too old by then), the next one goes through again."""
    now = [0.0]
    sampler = Sampler(every_s=0, scene_change=0.05, max_skip_s=100, pending_s=2.0, clock=lambda: now[0])
    dark = np.zeros((36, 64, 3), np.uint8)
    sampler.due(0.0)
    assert sampler.changed(dark, 0)
    now[0] = 1.0
    sampler.due(1.0)
    assert not sampler.changed(dark, 1), "frame 0 is still on its way"
    sampler.discarded(0)
    sampler.due(1.5)
    assert sampler.changed(dark, 2), "frame 0 was never inferred"
    now[0] = 4.0
    sampler.due(4.0)
    assert sampler.changed(dark, 3), "frame 2 is older than pending_s: it was dropped"
    sampler.inferred(3)
    now[0] = 4.5
    sampler.due(4.5)
    assert not sampler.changed(dark, 4)


def test_wait_settled_holds_until_the_worker_reported_every_frame_let_through() -> None:
    """realtime: false: the gate decides after the worker is done with the previous frame."""
    sampler = Sampler(0.0, scene_change=0.05, pending_s=float("inf"))
    image = np.zeros((36, 64, 3), np.uint8)
    assert sampler.wait_settled(0)
    assert sampler.changed(image, 1)
    assert not sampler.wait_settled(0)
    sampler.discarded(1)
    assert sampler.wait_settled(0)
    assert sampler.changed(image, 2)
    sampler.inferred(2)
    assert sampler.wait_settled(0) and not sampler.changed(image, 3)


def test_force_at_lets_frames_through_from_that_task_time_on() -> None:
    sampler = Sampler(0.0, scene_change=0.05, max_skip_s=1000.0)
    image = np.zeros((36, 64, 3), np.uint8)
    sampler.due(0.0)
    assert sampler.changed(image, 0, 0.0)
    sampler.inferred(0)
    sampler.force_at(10.0)
    assert not sampler.changed(image, 1, 9.9)
    assert sampler.changed(image, 2, 10.0)
    sampler.force_at(None)
    sampler.inferred(2)
    assert not sampler.changed(image, 3, 20.0)


def test_lockstep_tracks_frames_without_a_scene_gate_too() -> None:
    """realtime: false with scene_change 0: still one frame in flight, in order."""
    sampler = Sampler(0.0, scene_change=0.0, lockstep=True)
    image = np.zeros((36, 64, 3), np.uint8)
    assert sampler.changed(image, 1) and not sampler.wait_settled(0)
    sampler.inferred(1)
    assert sampler.wait_settled(0)
    assert Sampler(0.0).changed(image, 1) and Sampler(0.0).wait_settled(0)
