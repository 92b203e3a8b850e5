"""How fast `blipd scan` reads recorded video: seconds of video per second of scanning.

The issue's case: samples/demo.mp4 (100 s, 640x360, 25 fps), the demo model, caption + 3 prompts
+ 2 questions, `sample_every_s: 1`, on 2 cores. Two configs:

  typical   intervals and gate at their defaults: caption every 5 s, questions every 10 s, scene
            gate 0.02 (what a config that sets nothing more runs)
  every     nothing skipped: gate off, caption and both questions on every sample point

Each is scanned --reps times in one process (one engine, loaded once: the figure is the scan,
not the model load); the references measured in the same run are decoding alone (grab every
frame, retrieve the sampled ones: the floor any scan of this file pays) and Engine.infer alone
on the sampled frames, pre-decoded. Figures are medians with min and max; the target is
>= 10x real time.

Usage: python bench/scan.py --json OUT [--reps N] [--clip FILE]
"""
import argparse
import json
import logging
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import load_note, machine_info, spread  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
PROMPTS = [("red_circle", "a red circle"), ("blue_square", "a blue square"), ("yellow_star", "a yellow star")]
QUESTIONS = [("shape_count", "how many shapes are there?"), ("triangle", "is there a triangle?")]
TARGET = 10.0
log = logging.getLogger("bench.scan")


def _config(path: Path, clip: Path, every: bool) -> Path:
    stream: Dict[str, Any] = {
        "name": "bench", "url": str(clip),
        "prompts": [{"id": pid, "text": text, "enter": 0.55, "exit": 0.3, "dwell_s": 1} for pid, text in PROMPTS],
        "questions": [dict({"id": qid, "text": text}, **({"every_s": 1} if every else {})) for qid, text in QUESTIONS],
    }
    defaults: Dict[str, Any] = {"sample_every_s": 1.0}
    if every:
        stream["caption"] = {"enabled": True, "every_s": 1}
        defaults["scene_change"] = 0.0
    config = {"model": {"package": str(REPO / "models" / "demo"), "threads": 2}, "metrics": {"port": 0},
              "defaults": defaults, "streams": [stream]}
    path.write_text(json.dumps(config))  # JSON is YAML
    return path


def _scan(config: Path, clip: Path, reps: int) -> Dict[str, Any]:
    from daemon.config.config import load_config
    from daemon.tuning.scan import make_scanner, pick_stream

    settings = load_config(str(config))
    stream = pick_stream(settings, None)
    speeds: List[float] = []
    last: Any = None
    with make_scanner(settings, stream) as scanner:
        for _ in range(reps):
            last = scanner.scan(str(clip))
            speeds.append(last.speed)
            log.info("%s: %.1fx real time (%.2f s)", config.stem, last.speed, last.elapsed_s)
    counters = last.counters
    return {"speed_x": spread(speeds), "duration_s": last.duration_s, "elapsed_s": last.elapsed_s,
            "inference_s": last.inference_s, "sample_points": len(last.samples),
            "inferred": counters.get("inferred", 0), "unchanged": counters["dropped"].get("unchanged", 0),
            "events": len(last.events)}


def _decode_only(clip: Path, every_s: float) -> Dict[str, Any]:
    """Grab every frame, retrieve one per `every_s` of pts: what the scan's reader cannot avoid."""
    import cv2

    started = time.monotonic()
    cap = cv2.VideoCapture(str(clip))
    frames, next_due, last_pts = [], 0.0, 0.0
    while cap.grab():
        last_pts = cap.get(cv2.CAP_PROP_POS_MSEC) / 1000.0
        if last_pts >= next_due - 1e-3:
            ok, image = cap.retrieve()
            if ok:
                frames.append(image)
            next_due += every_s
    cap.release()
    elapsed = time.monotonic() - started
    return {"speed_x": last_pts / elapsed, "elapsed_s": elapsed, "frames": frames}


def _model_only(frames: List[Any], every: bool) -> float:
    """Seconds of Engine.infer over the sampled frames (tasks as the `every` config runs them)."""
    from blip.engine import Engine
    from blip.package import ModelPackage
    from blip.runtime import create_runtime, resolve_backend

    package = ModelPackage.load(str(REPO / "models" / "demo"))
    engine = Engine(package, create_runtime(resolve_backend("auto", package), threads=2))
    prompts, questions = dict(PROMPTS), dict(QUESTIONS)
    engine.infer(frames[0], caption=True, prompts=prompts, questions=questions)
    started = time.monotonic()
    for frame in frames:
        engine.infer(frame, caption=every, prompts=prompts, questions=questions if every else None)
    return time.monotonic() - started


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", required=True, metavar="OUT")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--clip", type=Path, default=REPO / "samples" / "demo.mp4")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("daemon").setLevel(logging.WARNING)
    if hasattr(os, "sched_setaffinity") and len(os.sched_getaffinity(0)) > 2:
        os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[:2])  # the 2 cores
    doc: Dict[str, Any] = {"machine": machine_info(), "clip": str(args.clip), "target_x": TARGET}
    with tempfile.TemporaryDirectory(prefix="bench-scan-") as work:
        for name, every in (("typical", False), ("every", True)):
            doc[name] = _scan(_config(Path(work) / ("%s.yaml" % name), args.clip, every), args.clip, args.reps)
    decode = _decode_only(args.clip, 1.0)
    doc["decode_only_x"] = decode["speed_x"]
    duration = doc["every"]["duration_s"]
    doc["model_only_x"] = {"typical": duration / _model_only(decode["frames"], False),
                           "every": duration / _model_only(decode["frames"], True)}
    doc["load"] = load_note()
    for name in ("typical", "every"):
        figure = doc[name]
        print("%-8s %5.1fx real time (min %.1f, max %.1f; target >= %g): %d sample points, %d inferred, %d events"
              % (name, figure["speed_x"]["median"], figure["speed_x"]["min"], figure["speed_x"]["max"], TARGET,
                 figure["sample_points"], figure["inferred"], figure["events"]))
    print("references: decoding alone %.1fx; Engine.infer alone %.1fx (typical tasks), %.1fx (every task)"
          % (doc["decode_only_x"], doc["model_only_x"]["typical"], doc["model_only_x"]["every"]))
    print(doc["load"])
    Path(args.json).write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
