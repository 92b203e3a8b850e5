"""Media time of a file stream: its pts, continued across loops and timestamp discontinuities.

A file made by concatenating recordings, or recorded from a camera whose clock reset, has
timestamps that go back (or leap ahead) mid-file; a looping file starts again at 0. Sampling,
pacing and (with `realtime: false`) task intervals need a clock that only moves forward, so each
such break starts a new segment whose media time continues one frame after the last one.
One MediaClock per stream, used by its reader thread only.
"""
from typing import Optional

BACK_S = 0.5
"""pts that go back by more than this start a new segment (less is decoder jitter: held flat)."""
AHEAD_S = 10.0
"""pts that leap ahead by more than this start a new segment (a gap between recordings)."""
DEFAULT_PERIOD_S = 0.04
"""Frame period assumed when the container gives no frame rate."""


class MediaClock:
    """`advance(pts)` for every grabbed frame; `jumped` tells whether that frame began a new
    segment inside one open (a reopen of a looping file is not a discontinuity)."""

    def __init__(self) -> None:
        self._base = 0.0
        self._last_pts: Optional[float] = None
        self._last_media: Optional[float] = None
        self._period = DEFAULT_PERIOD_S
        self.jumped = False

    @property
    def media_s(self) -> float:
        """Media time of the last frame (0 before any)."""
        return self._last_media or 0.0

    def new_session(self, fps: Optional[float]) -> None:
        """The source was (re)opened: its first frame continues after the last one."""
        self._last_pts = None
        self._period = 1.0 / fps if fps else DEFAULT_PERIOD_S

    def advance(self, pts: float) -> float:
        """Media time of a frame with this pts."""
        self.jumped = False
        if self._last_pts is None:
            if self._last_media is not None:  # a loop or reopen: go on from the last frame
                self._base = self._last_media + self._period - pts
        elif pts < self._last_pts - BACK_S or pts > self._last_pts + AHEAD_S:
            self.jumped = True
            self._base = (self._last_media or 0.0) + self._period - pts
        media = self._base + pts
        if self._last_media is not None and media < self._last_media:
            media = self._last_media  # small jitter back: hold the clock
        self._last_pts, self._last_media = pts, media
        return media
