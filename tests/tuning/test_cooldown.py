"""`cooldown_s`: a prompt that ends may not start again before the cooldown is over."""
from typing import List, Sequence, Tuple

import pytest

from daemon.pipeline.tracking import PromptTracker


def _run(tracker: PromptTracker, scores: Sequence[float], dt: float = 1.0) -> List[Tuple[float, str]]:
    out = []
    for i, score in enumerate(scores):
        phase = tracker.update(score, i * dt)
        if phase is not None:
            out.append((i * dt, phase.phase))
    return out


FLAP = [0.9] * 3 + [0.1] + [0.9] * 6


def test_without_cooldown_a_flap_restarts_at_once() -> None:
    assert _run(PromptTracker("p", "x", 0.7, 0.5), FLAP) == [(0.0, "start"), (3.0, "end"), (4.0, "start")]


def test_cooldown_delays_the_next_start_and_dwell_counts_after_it() -> None:
    tracker = PromptTracker("p", "x", 0.7, 0.5, cooldown_s=3.0)
    assert _run(tracker, FLAP) == [(0.0, "start"), (3.0, "end"), (6.0, "start")]
    dwelling = PromptTracker("p", "x", 0.7, 0.5, dwell_s=2.0, cooldown_s=3.0)
    result = _run(dwelling, FLAP)
    assert result == [(2.0, "start"), (3.0, "end"), (8.0, "start")]


def test_a_start_held_by_the_cooldown_keeps_the_tracker_settling() -> None:
    """The scene gate must keep letting frames through, or the held start would wait for a scene change."""
    tracker = PromptTracker("p", "x", 0.7, 0.5, cooldown_s=5.0)
    for i, score in enumerate([0.9, 0.9, 0.1, 0.1, 0.9]):
        tracker.update(score, float(i))
    tracker.update(0.9, 5.0)
    assert tracker.settling and not tracker.active
    assert tracker.update(0.9, 7.0).phase == "start"
    assert not tracker.settling


def test_the_end_at_a_stream_stop_also_starts_the_cooldown() -> None:
    tracker = PromptTracker("p", "x", 0.7, 0.5, cooldown_s=2.0)
    assert tracker.update(0.9, 0.0).phase == "start"
    assert tracker.end(1.0).phase == "end"
    assert tracker.update(0.9, 2.0) is None
    assert tracker.update(0.9, 3.0).phase == "start"


def test_negative_cooldown_is_refused() -> None:
    with pytest.raises(ValueError, match="cooldown_s"):
        PromptTracker("p", "x", 0.7, 0.5, cooldown_s=-1.0)


def test_the_config_cooldown_reaches_the_stream_trackers(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from daemon.config.config import load_config
    from daemon.counters import StreamCounters
    from daemon.pipeline.stream_state import StreamContext
    from tests.tuning.conftest import DEMO_CLIP, REPO

    path = tmp_path / "blipd.yaml"
    path.write_text(
        "model: {package: %s}\nstreams:\n  - name: cam\n    url: %s\n    prompts:\n"
        "      - {id: p, text: x, enter: 0.7, exit: 0.5, dwell_s: 0, smoothing: 1, cooldown_s: 4}\n"
        % (REPO / "models" / "demo", DEMO_CLIP))
    stream = load_config(str(path)).resolved_streams()[0]
    trackers = StreamContext(stream, StreamCounters("cam"), update_every_s=1000.0).trackers
    phases = [(t, [p.phase for p in trackers.update({"p": s}, float(t))]) for t, s in enumerate(FLAP)]
    assert [(t, names) for t, names in phases if names] == [(0, ["start"]), (3, ["end"]), (7, ["start"])]
