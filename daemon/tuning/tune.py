"""Prompt settings from labelled examples: replay a scan's raw scores through the daemon's own
PromptTracker under candidate settings (no model run) and keep the best event-level F1.

Replay: each file's sample points in order, the tracker fed the raw score at the point's media
time. A point the scene gate held back (no raw score) repeats the last inferred score: the gate
judged the picture unchanged, and while a phase is settling the daemon lets every frame through
anyway (PromptTracker.settling), so the tracker sees what it would have seen. A match still on at
the end of a file ends at its last sample point, as the daemon ends it when a file ends.

Search: a grid over enter, exit (a share of enter), dwell_s and cooldown_s (in sample periods) and
smoothing. Ties in F1 go to the setting whose neighbours on the enter/exit grid score best (the
middle of a plateau, not its edge, so the choice survives other footage), then to the smaller
mean start delay, then to the middle of what is left.
"""
import itertools
from dataclasses import asdict, dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple

from daemon.pipeline.tracking import PromptTracker
from daemon.tuning.labels import Labels
from daemon.tuning.metrics import EventScore, Interval, inside, rates, roc_auc, score_events

Series = List[Tuple[float, float]]
"""(media time, raw score) per sample point of one file."""

ENTERS = tuple(round(0.05 * i, 2) for i in range(1, 20))
EXIT_SHARES = (0.25, 0.5, 0.75, 0.9)
SMOOTHINGS = (1.0, 0.7, 0.5, 0.3)
DWELL_PERIODS = (0, 1, 2, 3)
COOLDOWN_PERIODS = (0, 2, 5)
EPSILON = 1e-9


@dataclass(frozen=True)
class Setting:
    """The tracker settings tune chooses (the same names as `prompts[]` in the config)."""

    enter: float
    exit: float
    dwell_s: float
    smoothing: float
    cooldown_s: float

    @staticmethod
    def of(prompt: Dict[str, Any]) -> "Setting":
        return Setting(float(prompt["enter"]), float(prompt["exit"]), float(prompt["dwell_s"]),
                       float(prompt["smoothing"]), float(prompt.get("cooldown_s", 0.0)))


@dataclass(frozen=True)
class Outcome:
    """A setting's result on the labelled files."""

    setting: Setting
    events: EventScore
    published: Tuple[Tuple[Interval, ...], ...]
    """per file, the published start/end intervals"""


@dataclass(frozen=True)
class PromptResult:
    """What tune found for one prompt."""

    prompt: Dict[str, Any]
    chosen: Outcome
    before: Outcome
    """the settings the scan ran with"""
    auc: Optional[float]
    tpr: Optional[float]
    fpr: Optional[float]
    """frame-level rates of the chosen setting's match-on state"""


def series_of(samples: Sequence[Dict[str, Any]], prompt_id: str) -> Series:
    """(pts, raw) per sample point; points before the first inferred one are skipped."""
    out: Series = []
    last: Optional[float] = None
    for sample in samples:
        raw = sample["raw"].get(prompt_id)
        if raw is not None:
            last = float(raw)
        if last is not None:
            out.append((float(sample["pts_s"]), last))
    return out


def replay(series: Series, prompt_id: str, setting: Setting) -> List[Interval]:
    """The published (start pts, end pts) intervals of one file under `setting`."""
    tracker = PromptTracker(prompt_id, prompt_id, setting.enter, setting.exit, dwell_s=setting.dwell_s,
                            smoothing=setting.smoothing, cooldown_s=setting.cooldown_s)
    out: List[Interval] = []
    opened: Optional[float] = None
    t = 0.0
    for t, raw in series:
        phase = tracker.update(raw, t)
        if phase is None:
            continue
        if phase.phase == "start":
            opened = t
        elif phase.phase == "end" and opened is not None:
            out.append((opened, t))
            opened = None
    if opened is not None and tracker.end(t) is not None:
        out.append((opened, t))
    return out


def evaluate(series: Sequence[Series], truth: Sequence[List[Interval]], prompt_id: str, setting: Setting) -> Outcome:
    published = tuple(tuple(replay(s, prompt_id, setting)) for s in series)
    events = EventScore(0, 0, 0)
    for got, want in zip(published, truth):
        events = events + score_events(got, want)
    return Outcome(setting, events, published)


def grid(period_s: float) -> List[Setting]:
    out = []
    for enter, share, smoothing, dwell, cooldown in itertools.product(
            ENTERS, EXIT_SHARES, SMOOTHINGS, DWELL_PERIODS, COOLDOWN_PERIODS):
        out.append(Setting(enter, round(enter * share, 3), dwell * period_s, smoothing, cooldown * period_s))
    return out


def _neighbours(setting: Setting, table: Dict[Setting, Outcome]) -> float:
    """Mean F1 of the grid's enter/exit neighbours (same smoothing, dwell, cooldown)."""
    i = ENTERS.index(setting.enter) if setting.enter in ENTERS else None
    if i is None:  # the config's own setting, off the grid (enter may be 0)
        return 0.0
    share = setting.exit / setting.enter
    j = next((k for k, s in enumerate(EXIT_SHARES) if abs(s - share) < 0.01), None)
    if j is None:
        return 0.0
    scores = []
    for di, dj in ((-1, 0), (1, 0), (0, -1), (0, 1), (-2, 0), (2, 0)):
        if 0 <= i + di < len(ENTERS) and 0 <= j + dj < len(EXIT_SHARES):
            enter = ENTERS[i + di]
            near = Setting(enter, round(enter * EXIT_SHARES[j + dj], 3), setting.dwell_s, setting.smoothing,
                           setting.cooldown_s)
            scores.append(table[near].events.f1 if near in table else 0.0)
    return sum(scores) / len(scores) if scores else 0.0


def choose(outcomes: Sequence[Outcome]) -> Outcome:
    """Best F1; ties as the module docstring says."""
    table = {o.setting: o for o in outcomes}
    top = max(o.events.f1 for o in outcomes)
    best = [o for o in outcomes if o.events.f1 >= top - EPSILON]
    robust = {o.setting: _neighbours(o.setting, table) for o in best}
    most = max(robust.values())
    best = [o for o in best if robust[o.setting] >= most - EPSILON]
    delay = {o.setting: (o.events.mean_delay_s if o.events.mean_delay_s is not None else 0.0) for o in best}
    least = min(delay.values())
    best = [o for o in best if delay[o.setting] <= least + EPSILON]
    best.sort(key=lambda o: (o.setting.enter, o.setting.exit, -o.setting.smoothing, o.setting.dwell_s,
                             o.setting.cooldown_s))
    return best[len(best) // 2]


def tune_prompt(prompt: Dict[str, Any], files: Sequence[Dict[str, Any]], truth: Sequence[List[Interval]],
                period_s: float) -> PromptResult:
    """Search one prompt's settings over the labelled files (`truth`: its intervals per file)."""
    pid = prompt["id"]
    series = [series_of(f["samples"], pid) for f in files]
    before = evaluate(series, truth, pid, Setting.of(prompt))
    chosen = choose([evaluate(series, truth, pid, s) for s in grid(period_s)] + [before])
    raw, positive, on = [], [], []
    for f, want, got in zip(files, truth, chosen.published):
        for sample in f["samples"]:
            score = sample["raw"].get(pid)
            t = float(sample["pts_s"])
            if score is not None:
                raw.append(float(score))
                positive.append(inside(t, want))
                on.append(inside(t, got))
    tpr, fpr = rates(on, positive)
    return PromptResult(prompt, chosen, before, roc_auc(raw, positive), tpr, fpr)


def tune(doc: Dict[str, Any], labels: Sequence[Labels]) -> List[PromptResult]:
    """Every prompt of the scan that some label file names; `labels` one per file of the scan."""
    period = float(doc.get("sample_every_s") or 1.0)
    results = []
    for prompt in doc["prompts"]:
        if not any(prompt["id"] in file_labels for file_labels in labels):
            continue
        truth = [list(file_labels.get(prompt["id"], [])) for file_labels in labels]
        results.append(tune_prompt(prompt, doc["files"], truth, period))
    return results


def setting_dict(setting: Setting) -> Dict[str, float]:
    return {k: (int(v) if float(v).is_integer() and k != "smoothing" else v) for k, v in asdict(setting).items()}


def published_intervals(events: Sequence[Dict[str, Any]], prompt_id: str) -> List[Interval]:
    """(start pts, end pts) of each match of `prompt_id` in a list of published events (a scan's,
    or what a subscriber received), to score them like a replay."""
    out: List[Interval] = []
    opened: Optional[float] = None
    for event in events:
        if event.get("type") != "match" or event.get("prompt") != prompt_id:
            continue
        if event["phase"] == "start":
            opened = float(event["pts_s"])
        elif event["phase"] == "end" and opened is not None:
            out.append((opened, float(event["pts_s"])))
            opened = None
    return out
