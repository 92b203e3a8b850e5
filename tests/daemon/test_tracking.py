"""Prompt tracking on synthetic score sequences: no event storms, dwell, hysteresis, rate limits."""
from typing import List, Optional, Sequence

import pytest

from daemon.pipeline.tracking import MatchPhase, PromptTracker, StreamTrackers


def _run(tracker: PromptTracker, scores: Sequence[float], dt: float = 1.0, t0: float = 1000.0):
    """Feed scores at `dt` spacing; the non-None phases with the time they came at."""
    out = []
    for i, score in enumerate(scores):
        phase = tracker.update(score, t0 + i * dt)
        if phase is not None:
            out.append((t0 + i * dt, phase))
    return out


def _names(result) -> List[str]:
    return [phase.phase for _, phase in result]


def test_clean_pulse_gives_one_start_and_one_end():
    tracker = PromptTracker("p", "a red circle", enter=0.7, exit=0.5, dwell_s=0)
    result = _run(tracker, [0.1] * 5 + [0.9] * 5 + [0.1] * 5)
    assert _names(result) == ["start", "end"]
    (t_start, start), (t_end, end) = result
    assert (t_start, t_end) == (1005.0, 1010.0)
    assert start.prompt == "p" and start.text == "a red circle"
    assert end.started == 1005.0 and end.duration_s == 5.0 and end.peak == 0.9
    assert end.raw_score == 0.1 and not tracker.active


def test_flicker_around_enter_is_not_a_storm():
    tracker = PromptTracker("p", "x", enter=0.7, exit=0.5, dwell_s=0, smoothing=0.5)
    flicker = [0.72, 0.66] * 50
    result = _run(tracker, flicker)
    assert len(result) <= 2
    # the same flicker without hysteresis (exit == enter) and smoothing shows what is avoided
    naive = _run(PromptTracker("p", "x", enter=0.7, exit=0.7, dwell_s=0), flicker)
    assert len(naive) == 100


def test_dwell_is_respected():
    tracker = PromptTracker("p", "x", enter=0.7, exit=0.5, dwell_s=3.0)
    # 3 samples above (only 2 s of dwell), a dip resets it, then 4 samples (3 s) start it
    result = _run(tracker, [0.9, 0.9, 0.9, 0.2, 0.9, 0.9, 0.9, 0.9])
    assert _names(result) == ["start"]
    t_start, start = result[0]
    assert t_start == 1007.0
    assert start.started == 1004.0 and start.duration_s == 3.0


def test_hysteresis_keeps_the_match_between_exit_and_enter():
    tracker = PromptTracker("p", "x", enter=0.7, exit=0.5, dwell_s=0)
    result = _run(tracker, [0.8, 0.6, 0.55, 0.6, 0.69, 0.51, 0.49, 0.6, 0.69])
    assert _names(result) == ["start", "end"]
    assert result[1][0] == 1006.0  # ends only below exit; re-entering needs enter again


def test_updates_are_rate_limited():
    tracker = PromptTracker("p", "x", enter=0.7, exit=0.5, dwell_s=0, update_every_s=5.0)
    result = _run(tracker, [0.9] * 21, dt=0.5)  # 10 s active at 2 samples/s
    assert _names(result) == ["start", "update", "update"]
    times = [t for t, _ in result]
    assert times == [1000.0, 1005.0, 1010.0]
    update = result[1][1]
    assert update.duration_s == 5.0 and update.peak == pytest.approx(0.9)
    assert _names(_run(PromptTracker("p", "x", 0.7, 0.5), [0.9] * 10)) == ["start"]  # no updates


def test_smoothing_initialises_then_lags():
    tracker = PromptTracker("p", "x", enter=0.7, exit=0.5, dwell_s=0, smoothing=0.5)
    assert tracker.update(0.2, 0.0) is None
    assert tracker.update(1.0, 1.0) is None  # smoothed 0.6
    phase: Optional[MatchPhase] = tracker.update(1.0, 2.0)  # smoothed 0.8
    assert phase is not None and phase.phase == "start"
    assert phase.score == pytest.approx(0.8) and phase.raw_score == 1.0


def test_non_finite_scores_are_ignored():
    tracker = PromptTracker("p", "x", enter=0.7, exit=0.5)
    assert tracker.update(float("nan"), 0.0) is None
    assert tracker.update(0.9, 1.0).phase == "start"


def test_end_all_ends_only_active_prompts():
    trackers = StreamTrackers("demo", [PromptTracker("a", "x", 0.7, 0.5), PromptTracker("b", "y", 0.7, 0.5)])
    phases = trackers.update({"a": 0.9, "b": 0.1}, 10.0)
    assert [(p.prompt, p.phase) for p in phases] == [("a", "start")]
    ended = trackers.end_all(12.5)
    assert [(p.prompt, p.phase, p.duration_s) for p in ended] == [("a", "end", 2.5)]
    assert trackers.end_all(13.0) == []


@pytest.mark.parametrize("kwargs", [dict(enter=0.5, exit=0.7), dict(enter=0.7, exit=0.5, smoothing=0.0),
                                    dict(enter=0.7, exit=0.5, dwell_s=-1)])
def test_bad_settings_name_the_prompt(kwargs):
    with pytest.raises(ValueError, match="prompt gate_person"):
        PromptTracker("gate_person", "x", **kwargs)


def test_settling_while_the_score_lags_or_the_dwell_runs() -> None:
    """The scene gate keeps frames coming while `settling`: a lagging smoothed score or a start
    waiting for its dwell; once the phase is decided and the score converged, it is not."""
    from daemon.pipeline.tracking import PromptTracker

    tracker = PromptTracker("p", "a red circle", enter=0.6, exit=0.3, dwell_s=1.0, smoothing=0.5)
    assert not tracker.settling
    tracker.update(0.0, 0.0)
    assert not tracker.settling
    tracker.update(0.9, 1.0)  # smoothed 0.45: lags the raw score
    assert tracker.settling
    tracker.update(0.9, 2.0)  # 0.675 >= enter: dwell starts
    assert tracker.settling
    phases = [tracker.update(0.9, t) for t in (3.0, 4.0, 5.0, 6.0, 7.0)]
    assert [p.phase for p in phases if p is not None][:1] == ["start"]
    assert tracker.active and not tracker.settling
