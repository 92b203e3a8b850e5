"""How well published matches fit labelled intervals: event-level precision, recall, F1 and start
delay (what an operator feels: alerts that were right, missed, or false), and frame-level ROC AUC
(how well the raw score separates at all, whatever the thresholds)."""
from dataclasses import dataclass
from typing import Optional, Sequence, Tuple

Interval = Tuple[float, float]

MIN_IOU = 0.5
"""A published start/end interval hits a labelled one when their IoU is at least this."""


@dataclass(frozen=True)
class EventScore:
    """Counts over one or more files; delays are start delays (published start - labelled start) of hits."""

    hits: int
    false_starts: int
    missed: int
    delays: Tuple[float, ...] = ()

    @property
    def precision(self) -> float:
        published = self.hits + self.false_starts
        return self.hits / published if published else 1.0

    @property
    def recall(self) -> float:
        labelled = self.hits + self.missed
        return self.hits / labelled if labelled else 1.0

    @property
    def f1(self) -> float:
        """1.0 when there was nothing to find and nothing was published."""
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r > 0 else 0.0

    @property
    def mean_delay_s(self) -> Optional[float]:
        return sum(self.delays) / len(self.delays) if self.delays else None

    def __add__(self, other: "EventScore") -> "EventScore":
        return EventScore(self.hits + other.hits, self.false_starts + other.false_starts,
                          self.missed + other.missed, self.delays + other.delays)


def iou(a: Interval, b: Interval) -> float:
    overlap = min(a[1], b[1]) - max(a[0], b[0])
    if overlap <= 0:
        return 0.0
    union = max(a[1], b[1]) - min(a[0], b[0])
    return overlap / union if union > 0 else 0.0


def score_events(published: Sequence[Interval], labelled: Sequence[Interval], min_iou: float = MIN_IOU) -> EventScore:
    """One-to-one matching, best IoU first: each labelled interval can be hit once, each published
    one hit at most one label; the rest are false starts and missed intervals."""
    pairs = sorted(((iou(p, l), i, j) for i, p in enumerate(published) for j, l in enumerate(labelled)), reverse=True)
    used_p, used_l, delays = set(), set(), []
    for overlap, i, j in pairs:
        if overlap < min_iou:
            break
        if i in used_p or j in used_l:
            continue
        used_p.add(i)
        used_l.add(j)
        delays.append(published[i][0] - labelled[j][0])
    return EventScore(len(used_p), len(published) - len(used_p), len(labelled) - len(used_l), tuple(delays))


def inside(t: float, intervals: Sequence[Interval]) -> bool:
    return any(start <= t < end for start, end in intervals)


def roc_auc(scores: Sequence[float], positive: Sequence[bool]) -> Optional[float]:
    """Probability that a positive sample scores above a negative one (ties count half);
    None when either class is missing."""
    ranked = sorted(zip(scores, positive))
    n_pos = sum(1 for _, p in ranked if p)
    n_neg = len(ranked) - n_pos
    if n_pos == 0 or n_neg == 0:
        return None
    rank_sum = 0.0
    i = 0
    while i < len(ranked):  # average ranks over ties
        j = i
        while j < len(ranked) and ranked[j][0] == ranked[i][0]:
            j += 1
        average = (i + 1 + j) / 2.0
        rank_sum += average * sum(1 for k in range(i, j) if ranked[k][1])
        i = j
    return (rank_sum - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg)


def rates(on: Sequence[bool], positive: Sequence[bool]) -> Tuple[Optional[float], Optional[float]]:
    """(true positive rate, false positive rate) of a frame-level on/off decision."""
    tp = sum(1 for o, p in zip(on, positive) if o and p)
    fp = sum(1 for o, p in zip(on, positive) if o and not p)
    n_pos = sum(1 for p in positive if p)
    n_neg = len(positive) - n_pos
    return (tp / n_pos if n_pos else None, fp / n_neg if n_neg else None)
