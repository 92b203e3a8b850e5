"""Media time: pts continued across loops and discontinuities, never going back."""
import pytest

from daemon.pipeline.sources.mediatime import MediaClock


def test_media_time_follows_pts_and_continues_across_a_restart() -> None:
    clock = MediaClock()
    clock.new_session(25.0)
    got = [clock.advance(p) for p in (0.0, 0.04, 1.0, 0.0, 0.04)]
    assert got == pytest.approx([0.0, 0.04, 1.0, 1.04, 1.08])


def test_a_jump_back_or_a_leap_ahead_is_a_new_segment_and_jitter_is_not() -> None:
    clock = MediaClock()
    clock.new_session(10.0)
    jumped, media = [], []
    for pts in (0.0, 1.0, 2.0, 1.9, 2.1, 0.0, 0.1, 50.0, 50.1):
        media.append(clock.advance(pts))
        jumped.append(clock.jumped)
    assert jumped == [False, False, False, False, False, True, False, True, False]
    assert media == pytest.approx([0.0, 1.0, 2.0, 2.0, 2.1, 2.2, 2.3, 2.4, 2.5]), "jitter back is held flat"


def test_a_reopen_continues_without_counting_a_discontinuity() -> None:
    clock = MediaClock()
    clock.new_session(None)
    clock.advance(0.0)
    clock.advance(1.0)
    clock.new_session(None)
    assert clock.advance(0.0) == pytest.approx(1.04) and not clock.jumped
