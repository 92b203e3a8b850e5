"""Evaluate a demo package through blip's runtime (ONNX Runtime, not PyTorch) on held-out scenes.

    python -m blip.demo.evaluate --package models/demo --json OUT

Frames are rendered at the clip's 640x360 and go through the same preprocessing as the daemon's.
The held-out seed is a string no training batch ever used ("heldout-<seed>").
"""
import argparse
import json
import logging
import random
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from blip.demo import scenes

log = logging.getLogger("blip.demo.evaluate")

DEFAULT_SEED = 20261127


def parse_caption(text: str) -> Optional[List[scenes.Item]]:
    """Items of a caption in the world's template, or None when it is not one."""
    items: List[scenes.Item] = []
    phrases = {v: k for k, v in scenes.SLOT_PHRASE.items()}
    for part in text.split(" and "):
        words = part.split()
        if len(words) != 6 or words[0] != "a" or " ".join(words[3:]) not in phrases:
            return None
        items.append((words[1], words[2], phrases[" ".join(words[3:])]))
    return items


def attribute_hits(scene: scenes.Scene, predicted: str) -> Tuple[int, int]:
    """(right, total) over every shape's slot, colour and kind, plus the shape count."""
    truth = scene.items()
    items = parse_caption(predicted) or []
    by_slot = {slot: (color, kind) for color, kind, slot in items}
    right = int(len(items) == len(truth))
    for color, kind, slot in truth:
        got = by_slot.get(slot)
        right += int(got is not None) + int(got is not None and got[0] == color) + int(got is not None and got[1] == kind)
    return right, 3 * len(truth) + 1


def auc(positives: Sequence[float], negatives: Sequence[float]) -> float:
    """Probability that a random positive outscores a random negative (ties count half)."""
    pos = np.asarray(positives, np.float64)[:, None]
    neg = np.asarray(negatives, np.float64)[None, :]
    return float(((pos > neg).sum() + 0.5 * (pos == neg).sum()) / (pos.size * neg.size))


def itm_texts(scene: scenes.Scene, rng: random.Random) -> Tuple[List[str], List[str]]:
    """Two true descriptions (the caption and a partial one) and two one-attribute-changed ones."""
    full = scene.items()
    partial = scenes.true_description(scene, rng)
    while partial == full and len(full) > 1:
        partial = scenes.true_description(scene, rng)
    pos = [scenes.describe(full), scenes.describe(partial)]
    neg = []
    for items in (full, partial):
        false = scenes.perturb(scene, items, rng)
        if false is not None:
            neg.append(scenes.describe(false))
    return pos, neg


class _Tasks:
    """The package's three tasks on one ONNX Runtime engine."""

    def __init__(self, package: Path, threads: int) -> None:
        from blip.answer import Answerer
        from blip.caption import Captioner
        from blip.match import Matcher
        from blip.package import ModelPackage
        from blip.runtime import create_runtime
        from blip.runtime.base import GraphLoader

        pkg = ModelPackage.load(str(package))
        loader = GraphLoader(create_runtime("onnxruntime", threads=threads))
        self.caption = Captioner(pkg, loader.runtime, loader)
        self.match = Matcher(pkg, loader.runtime, loader)
        self.answer = Answerer(pkg, loader.runtime, loader)


def evaluate_package(package: Path, scenes_count: int = 200, seed: int = DEFAULT_SEED,
                     threads: int = 2) -> Dict[str, float]:
    """The metrics dict of metrics.json."""
    tasks = _Tasks(Path(package), threads)
    rng = random.Random("heldout-%d" % seed)
    exact, attr_right, attr_total = 0, 0, 0
    pos_scores: List[float] = []
    neg_scores: List[float] = []
    by_kind: Dict[str, List[int]] = {k: [] for k in scenes.QUESTION_KINDS}
    misses: List[str] = []
    start = time.monotonic()
    for i in range(scenes_count):
        scene = scenes.random_scene(rng)
        frame = scene.render(scenes.VIDEO_SIZE)
        got = tasks.caption.caption(frame)
        exact += int(got == scene.caption())
        right, total = attribute_hits(scene, got)
        attr_right, attr_total = attr_right + right, attr_total + total
        if got != scene.caption() and len(misses) < 10:
            misses.append("%r -> %r" % (scene.caption(), got))
        pos, neg = itm_texts(scene, rng)
        scores = tasks.match.scores(frame, {str(j): t for j, t in enumerate(pos + neg)})
        pos_scores += [scores[str(j)] for j in range(len(pos))]
        neg_scores += [scores[str(len(pos) + j)] for j in range(len(neg))]
        qa = {kind: scenes.question_of_kind(scene, kind, rng) for kind in scenes.QUESTION_KINDS}
        answers = tasks.answer.answer(frame, {kind: q for kind, (q, _) in qa.items()})
        for kind, (_, truth) in qa.items():
            by_kind[kind].append(int(answers[kind] == truth))
        if (i + 1) % 50 == 0:
            log.info("evaluated %d/%d scenes (%.0f s)", i + 1, scenes_count, time.monotonic() - start)
    for line in misses:
        log.info("caption miss: %s", line)
    all_answers = [x for xs in by_kind.values() for x in xs]
    pos_arr, neg_arr = np.array(pos_scores), np.array(neg_scores)
    metrics = {
        "scenes": scenes_count,
        "caption_exact": round(exact / scenes_count, 4),
        "caption_attribute_accuracy": round(attr_right / attr_total, 4),
        "itm_auc": round(auc(pos_scores, neg_scores), 4),
        "itm_accuracy_at_0.5": round(float(((pos_arr > 0.5).sum() + (neg_arr <= 0.5).sum()) /
                                           (pos_arr.size + neg_arr.size)), 4),
        "answer_accuracy": round(float(np.mean(all_answers)), 4),
    }
    metrics.update({"answer_accuracy_%s" % k: round(float(np.mean(v)), 4) for k, v in by_kind.items()})
    metrics["seed"] = "heldout-%d" % seed
    return metrics


def evaluate_clip(package: Path, video: Path, timeline: Sequence[Dict], threads: int = 2) -> Dict[str, float]:
    """Decoded frames of the demo clip, one a second, against its timeline: what the daemon will
    see (H.264 artefacts included). Prompt presence is judged at a 0.5 score."""
    import cv2

    from blip.demo.clip import DEMO_PROMPTS

    tasks = _Tasks(Path(package), threads)
    cap = cv2.VideoCapture(str(video))
    if not cap.isOpened():
        raise SystemExit("cannot open %s" % video)
    fps = cap.get(cv2.CAP_PROP_FPS) or 25.0
    hits = {"caption": [], "prompts": [], "answers": []}
    index = 0
    try:
        while True:
            ok, frame = cap.read()
            if not ok:
                break
            t = index / fps
            index += 1
            if (index - 1) % int(round(fps)) != 0:
                continue
            seg = next(s for s in timeline if s["start_s"] <= t < s["end_s"])
            hits["caption"].append(int(tasks.caption.caption(frame) == seg["caption"]))
            scores = tasks.match.scores(frame, DEMO_PROMPTS)
            hits["prompts"] += [int((scores[p] > 0.5) == (p in seg["prompts_present"])) for p in DEMO_PROMPTS]
            got = tasks.answer.answer(frame, {q: q for q in seg["answers"]})
            hits["answers"] += [int(got[q] == a) for q, a in seg["answers"].items()]
    finally:
        cap.release()
    out: Dict[str, float] = {"clip_frames": len(hits["caption"])}
    out.update({"clip_%s_accuracy" % k: round(float(np.mean(v)), 4) for k, v in hits.items() if v})
    return out


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m blip.demo.evaluate", description=__doc__.split("\n")[0])
    p.add_argument("--package", type=Path, default=Path("models/demo"))
    p.add_argument("--json", type=Path, help="write the metrics here (stdout otherwise)")
    p.add_argument("--scenes", type=int, default=200)
    p.add_argument("--seed", type=int, default=DEFAULT_SEED)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--clip", type=Path, help="also score this demo clip against its .timeline.json")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    metrics = evaluate_package(args.package, args.scenes, args.seed, args.threads) if args.scenes else {}
    if args.clip:
        timeline_path = args.clip.with_name(args.clip.name.rsplit(".", 1)[0] + ".timeline.json")
        timeline = json.loads(timeline_path.read_text(encoding="utf-8"))
        metrics.update(evaluate_clip(args.package, args.clip, timeline, args.threads))
    text = json.dumps(metrics, indent=2) + "\n"
    if args.json:
        args.json.write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
