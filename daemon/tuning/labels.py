"""Label files for `blipd tune`: per prompt id, the intervals (media seconds) where it is present.

Two forms are read:

    {"prompts": {"person": [[12.0, 31.5], {"start_s": 80, "end_s": 95}], "car": []}}

(an empty list says "never present": its false starts still count), and a demo clip's timeline
(samples/demo.timeline.json, a list of segments with `start_s`, `end_s`, `prompts_present`, or
{"segments": [...]}): adjacent segments where a prompt is present merge into one interval, and a
prompt counts as labelled when some segment lists it. Every problem is one InputError line
naming the file and the item.
"""
import json
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Tuple

from daemon.tuning.errors import InputError

Interval = Tuple[float, float]
Labels = Dict[str, List[Interval]]
"""prompt id -> sorted, non-overlapping (start_s, end_s) intervals."""

MERGE_GAP_S = 1e-6


def load_labels(path: str, known: Optional[Iterable[str]] = None) -> Labels:
    """Read and check a label file; `known` prompt ids (the scan's): any other id is an error."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise InputError("%s: cannot read labels: %s" % (path, (exc.strerror or type(exc).__name__).lower())) from None
    except ValueError as exc:
        raise InputError("%s: not JSON: %s" % (path, str(exc).splitlines()[0])) from None
    if isinstance(data, dict) and "segments" in data:
        data = data["segments"]
    if isinstance(data, list):
        labels = _from_segments(path, data)
    elif isinstance(data, dict) and isinstance(data.get("prompts"), dict):
        labels = {str(pid): _intervals(path, "prompts.%s" % pid, spans) for pid, spans in data["prompts"].items()}
    else:
        raise InputError('%s: expected {"prompts": {ID: [[start_s, end_s], ...]}} or a list of timeline segments'
                         % path)
    if known is not None:
        known = list(known)
        unknown = sorted(set(labels) - set(known))
        if unknown:
            raise InputError("%s: unknown prompt id(s) %s (the scan has %s)"
                             % (path, ", ".join(unknown), ", ".join(known) or "no prompts"))
    return labels


def _number(path: str, where: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
        raise InputError("%s: %s: not a number of seconds: %r" % (path, where, value))
    if value < 0:
        raise InputError("%s: %s: negative time %g" % (path, where, value))
    return float(value)


def _span(path: str, where: str, item: Any) -> Interval:
    if isinstance(item, dict) and "start_s" in item and "end_s" in item:
        start, end = item["start_s"], item["end_s"]
    elif isinstance(item, (list, tuple)) and len(item) == 2:
        start, end = item
    else:
        raise InputError("%s: %s: expected [start_s, end_s] or {start_s, end_s}" % (path, where))
    start, end = _number(path, where + ".start_s", start), _number(path, where + ".end_s", end)
    if end <= start:
        raise InputError("%s: %s: inverted interval: end %g is not after start %g" % (path, where, end, start))
    return start, end


def _intervals(path: str, where: str, spans: Any) -> List[Interval]:
    if not isinstance(spans, list):
        raise InputError("%s: %s: expected a list of intervals" % (path, where))
    out = sorted(_span(path, "%s[%d]" % (where, i), item) for i, item in enumerate(spans))
    _no_overlap(path, where, out)
    return out


def _no_overlap(path: str, where: str, spans: List[Interval]) -> None:
    for (a0, a1), (b0, b1) in zip(spans, spans[1:]):
        if b0 < a1 - MERGE_GAP_S:
            raise InputError("%s: %s: overlapping intervals [%g, %g] and [%g, %g]" % (path, where, a0, a1, b0, b1))


def _from_segments(path: str, segments: List[Any]) -> Labels:
    """A clip timeline: segments must not overlap; a prompt's adjacent segments merge."""
    spans: List[Tuple[Interval, List[str]]] = []
    for i, seg in enumerate(segments):
        where = "segment %d" % i
        if not isinstance(seg, dict) or not isinstance(seg.get("prompts_present", []), list):
            raise InputError("%s: %s: expected {start_s, end_s, prompts_present: [...]}" % (path, where))
        spans.append((_span(path, where, seg), [str(p) for p in seg.get("prompts_present", [])]))
    spans.sort(key=lambda item: item[0])
    _no_overlap(path, "segments", [span for span, _ in spans])
    labels: Labels = {}
    for (start, end), present in spans:
        for pid in present:
            intervals = labels.setdefault(pid, [])
            if intervals and abs(intervals[-1][1] - start) <= MERGE_GAP_S:
                intervals[-1] = (intervals[-1][0], end)
            else:
                intervals.append((start, end))
    return labels
