"""Prompt-match state machine: per-frame ITM scores -> start / update / end phases.

Raw scores flicker from frame to frame; publishing every crossing of a threshold would flood
subscribers. Smoothing, a dwell time before `start` and a lower `exit` threshold (hysteresis) turn
them into one start, a few rate-limited updates and one end per real occurrence; `cooldown_s` keeps a
prompt that flaps (ends, comes back a moment later) from starting again too soon. One tracker per
(stream, prompt), used by whichever worker holds that stream's frame: not thread-safe by itself.
"""
import logging
import math
from dataclasses import dataclass
from typing import Dict, Iterable, List, Mapping, Optional

log = logging.getLogger(__name__)

SETTLE_EPSILON = 0.02
"""A smoothed score within this of the raw score has converged (see PromptTracker.settling)."""


@dataclass(frozen=True)
class MatchPhase:
    """Everything a match event needs besides its frame.

    prompt, text: the prompt's id and text
    phase:        start | update | end
    score:        smoothed score at this sample
    raw_score:    score of this sample
    peak:         highest smoothed score since start
    started:      time (same clock as `t`, epoch seconds) the smoothed score crossed enter
    duration_s:   t - started
    """

    prompt: str
    text: str
    phase: str
    score: float
    raw_score: float
    peak: float
    started: float
    duration_s: float


class PromptTracker:
    """One prompt of one stream. `t` is the frame's capture time in epoch seconds (Frame.wall_time).

    update_every_s: least time between two `update` phases while active; None = no updates.
    cooldown_s:     least time between an `end` and the next `start`; the dwell time counts from
                    the end of the cooldown, so `started` is never inside it.
    """

    def __init__(self, prompt_id: str, text: str, enter: float, exit: float, dwell_s: float = 0.0,
                 smoothing: float = 1.0, update_every_s: Optional[float] = None,
                 cooldown_s: float = 0.0) -> None:
        if not exit <= enter:
            raise ValueError("prompt %s: exit (%s) must not exceed enter (%s)" % (prompt_id, exit, enter))
        if not 0.0 < smoothing <= 1.0:
            raise ValueError("prompt %s: smoothing must be in (0, 1], not %s" % (prompt_id, smoothing))
        if dwell_s < 0 or cooldown_s < 0 or (update_every_s is not None and update_every_s < 0):
            raise ValueError("prompt %s: dwell_s, cooldown_s and update_every_s must be >= 0" % prompt_id)
        self.prompt_id = prompt_id
        self.text = text
        self.enter = enter
        self.exit = exit
        self.dwell_s = dwell_s
        self.smoothing = smoothing
        self.update_every_s = update_every_s
        self.cooldown_s = cooldown_s
        self._score: Optional[float] = None
        self._raw = 0.0
        self._above_since: Optional[float] = None
        self._started: Optional[float] = None
        self._peak = 0.0
        self._last_emit = 0.0
        self._ended_at: Optional[float] = None
        self._held = False  # above enter but inside the cooldown: a start is pending

    @property
    def active(self) -> bool:
        return self._started is not None

    @property
    def score(self) -> Optional[float]:
        """The smoothed score after the last sample; None before the first one."""
        return self._score

    @property
    def settling(self) -> bool:
        """True while the next samples may change the phase although the scene looks the same:
        the smoothed score still lags the raw one, or a start waits for its dwell time. The scene
        gate lets frames through meanwhile, so a match starts dwell_s after it appears, not at
        the next max_skip_s."""
        if self._score is None:
            return False
        lagging = abs(self._raw - self._score) > SETTLE_EPSILON
        return lagging or self._held or (self._above_since is not None and self._started is None)

    def update(self, raw_score: float, t: float) -> Optional[MatchPhase]:
        """Feed one sample; a phase when one is due, else None. Non-finite scores are ignored."""
        raw_score = float(raw_score)
        if not math.isfinite(raw_score):
            return None
        s = raw_score if self._score is None else (
            self.smoothing * raw_score + (1.0 - self.smoothing) * self._score)
        self._score, self._raw = s, raw_score
        if self._started is None:
            return self._maybe_start(s, t)
        self._peak = max(self._peak, s)
        if s < self.exit:
            return self._finish(t)
        if self.update_every_s is not None and t - self._last_emit >= self.update_every_s:
            self._last_emit = t
            return self._phase("update", t)
        return None

    def end(self, t: float) -> Optional[MatchPhase]:
        """End an active match now (stream removed or ended); None if not active."""
        return self._finish(t) if self._started is not None else None

    def _maybe_start(self, s: float, t: float) -> Optional[MatchPhase]:
        self._held = False
        if s < self.enter:
            self._above_since = None
            return None
        if self._ended_at is not None and t - self._ended_at < self.cooldown_s:
            self._held = True  # settling: the start may come on an unchanged scene
            self._above_since = None
            return None
        if self._above_since is None:
            self._above_since = t
        if t - self._above_since < self.dwell_s:
            return None
        self._started, self._peak, self._last_emit = self._above_since, s, t
        return self._phase("start", t)

    def _finish(self, t: float) -> MatchPhase:
        phase = self._phase("end", t)
        self._started = None
        self._above_since = None
        self._ended_at = t
        return phase

    def _phase(self, name: str, t: float) -> MatchPhase:
        started = self._started if self._started is not None else t
        return MatchPhase(self.prompt_id, self.text, name, float(self._score or 0.0), self._raw,
                          self._peak, started, max(0.0, t - started))


class StreamTrackers:
    """The prompt trackers of one stream, fed with the batch of scores of one frame."""

    def __init__(self, stream: str, trackers: Iterable[PromptTracker]) -> None:
        self.stream = stream
        self._trackers: Dict[str, PromptTracker] = {tr.prompt_id: tr for tr in trackers}

    def update(self, scores: Mapping[str, float], t: float) -> List[MatchPhase]:
        """Phases due for this frame, in prompt order; prompts missing from `scores` are skipped."""
        out = []
        for prompt_id, tracker in self._trackers.items():
            if prompt_id not in scores:
                continue
            phase = tracker.update(scores[prompt_id], t)
            if phase is not None:
                out.append(phase)
        return out

    def scores(self) -> Dict[str, Optional[float]]:
        """Smoothed score per prompt after the last sample (None before its first)."""
        return {prompt_id: tr.score for prompt_id, tr in self._trackers.items()}

    def active(self) -> Dict[str, bool]:
        """Per prompt: a match is going on (between its start and its end)."""
        return {prompt_id: tr.active for prompt_id, tr in self._trackers.items()}

    def settling(self) -> bool:
        """Any prompt whose phase may still change on an unchanged scene."""
        return any(tr.settling for tr in self._trackers.values())

    def end_all(self, t: float) -> List[MatchPhase]:
        """`end` for every active prompt, e.g. when the stream is removed or ends."""
        phases = [p for p in (tr.end(t) for tr in self._trackers.values()) if p is not None]
        if phases:
            log.debug("stream %s: ended %d active match(es)", self.stream, len(phases))
        return phases
