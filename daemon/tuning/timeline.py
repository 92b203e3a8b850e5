"""The scan's timeline file (JSON, and a CSV of its sample points) and reading it back for tune.

    {"format": "blipd-scan", "version": 1, "config": ..., "stream": ..., "model": ...,
     "sample_every_s": 1.0, "scene_change": 0.02, "update_every_s": 5.0,
     "caption": {"enabled": true, "every_s": 5.0},
     "prompts": [{"id", "text", "enter", "exit", "dwell_s", "smoothing", "cooldown_s"}],
     "questions": [{"id", "text", "every_s"}],
     "files": [{"file", "duration_s", "elapsed_s", "speed", "inference_s", "counters",
                "samples": [{"pts_s", "frame", "gate", "inferred", "caption", "raw": {id: score},
                             "score": {id: smoothed}, "active": {id: bool}, "answers": {id: text}}],
                "events": [event objects exactly as published, config/events.schema.json]}]}

`gate` false: the scene gate found the frame unchanged, nothing ran (no `raw`); `raw` holds the
scores of an inferred sample point, `score` and `active` the trackers after it.
"""
import csv
import json
import math
from pathlib import Path
from typing import Any, Dict, Iterable, List, Sequence

from daemon.tuning.errors import InputError

FORMAT = "blipd-scan"
VERSION = 1
PROMPT_FIELDS = ("id", "text", "enter", "exit", "dwell_s", "smoothing", "cooldown_s")


def document(settings: Any, stream: Any, model: str, files: Sequence[Any]) -> Dict[str, Any]:
    """The timeline of a scan: `stream` a ResolvedStream, `files` FileScan results."""
    return {
        "format": FORMAT, "version": VERSION,
        "config": str(settings.source_path) if settings.source_path else None,
        "stream": stream.name, "model": model,
        "sample_every_s": stream.sample_every_s, "scene_change": stream.scene_change,
        "update_every_s": stream.update_every_s,
        "caption": {"enabled": stream.caption.enabled, "every_s": stream.caption.every_s},
        "prompts": [{name: getattr(p, name) for name in PROMPT_FIELDS} for p in stream.prompts],
        "questions": [{"id": q.id, "text": q.text, "every_s": q.every_s} for q in stream.questions],
        "files": [f.as_json() for f in files],
    }


def write_json(path: str, doc: Dict[str, Any]) -> None:
    Path(path).write_text(json.dumps(doc, ensure_ascii=False, allow_nan=False) + "\n", encoding="utf-8")


def write_csv(path: str, doc: Dict[str, Any]) -> None:
    """One row per sample point: file, pts_s, frame, gate, inferred, caption, then per prompt
    raw/score/active, then per question the answer."""
    prompts = [p["id"] for p in doc["prompts"]]
    questions = [q["id"] for q in doc["questions"]]
    header = ["file", "pts_s", "frame", "gate", "inferred", "caption"]
    for pid in prompts:
        header += ["%s_raw" % pid, "%s_score" % pid, "%s_active" % pid]
    header += ["answer_%s" % qid for qid in questions]
    with open(path, "w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        writer.writerow(header)
        for f in doc["files"]:
            for s in f["samples"]:
                row: List[Any] = [f["file"], s["pts_s"], s["frame"], int(s["gate"]), int(s["inferred"]),
                                  s.get("caption") or ""]
                for pid in prompts:
                    score = s.get("score", {}).get(pid)
                    row += [s["raw"].get(pid, ""), "" if score is None else score,
                            int(bool(s.get("active", {}).get(pid)))]
                row += [s["answers"].get(qid, "") for qid in questions]
                writer.writerow(row)


def _numbers(values: Iterable[Any]) -> None:
    """ValueError unless every value is a finite number (not a bool or a numeric string)."""
    for value in values:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ValueError(repr(value))


def load(path: str) -> Dict[str, Any]:
    """A timeline written by `blipd scan`; InputError (one line) for anything else."""
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise InputError("%s: cannot read timeline: %s" % (path, (exc.strerror or type(exc).__name__).lower())) from None
    except ValueError as exc:
        raise InputError("%s: not JSON: %s" % (path, str(exc).splitlines()[0])) from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise InputError("%s: not a timeline written by `blipd scan` (format %r)" % (path, FORMAT))
    if doc.get("version") != VERSION:
        raise InputError("%s: timeline version %r, this blipd reads %d" % (path, doc.get("version"), VERSION))
    try:
        for p in doc["prompts"]:
            str(p["id"]), str(p["text"])
            _numbers(p[name] for name in PROMPT_FIELDS[2:])
        for f in doc["files"]:
            for s in f["samples"]:
                _numbers([s["pts_s"]])
                _numbers(dict(s["raw"]).values())  # tune replays these: a string would end it in a traceback
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError("%s: damaged timeline (%s missing or wrong)" % (path, exc)) from None
    if not doc["files"]:
        raise InputError("%s: the timeline holds no file" % path)
    return doc
