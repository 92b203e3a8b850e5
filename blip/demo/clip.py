"""The demo clip: a scripted 100 s video of the synthetic world, and its timeline.

    python -m blip.demo.clip --out samples/demo.mp4     (also writes samples/demo.timeline.json)

Shapes appear, jump to another slot and leave at segment boundaries (cuts); between cuts each
shape only bobs a little inside its slot, so every segment's caption, answers and matching
prompts hold for its whole 8-12 s (the daemon samples about once a second). The background and
its noise stay fixed: the clip compresses well and only the shapes change.
Frames come from the same renderer as the training data (blip/demo/scenes.py).
"""
import argparse
import json
import logging
import math
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from blip.demo import scenes
from blip.demo.scenes import Shape

log = logging.getLogger("blip.demo.clip")

FPS = 25
SIZE = scenes.VIDEO_SIZE
BACKGROUND = (128, 132, 136)
NOISE = 3.0
NOISE_SEED = 7
BOB = 0.02  # fraction of the height
BOB_PERIOD_S = 4.0
DEMO_PROMPTS: Dict[str, str] = {"red_circle": "a red circle", "blue_square": "a blue square"}
DEMO_QUESTIONS: Tuple[str, ...] = (scenes.Q_COUNT, scenes.Q_THERE.format(kind="triangle"))


def _shape(kind: str, color: str, slot: str) -> Shape:
    return Shape(kind=kind, color=color, slot=slot, size=0.2, y=0.5)


RED_CIRCLE = _shape("circle", "red", "left")
BLUE_SQUARE = _shape("square", "blue", "right")
YELLOW_STAR = _shape("star", "yellow", "middle")
GREEN_TRIANGLE = _shape("triangle", "green", "left")
PURPLE_CIRCLE = _shape("circle", "purple", "right")

# (start_s, end_s, shapes). Hard negatives on purpose: a purple circle and a red triangle must not
# start `red_circle`, a blue triangle must not start `blue_square`.
SCRIPT: Tuple[Tuple[float, float, Tuple[Shape, ...]], ...] = (
    (0.0, 8.0, (YELLOW_STAR,)),
    (8.0, 20.0, (RED_CIRCLE, YELLOW_STAR)),
    (20.0, 32.0, (RED_CIRCLE, YELLOW_STAR, BLUE_SQUARE)),
    (32.0, 44.0, (RED_CIRCLE, BLUE_SQUARE)),
    (44.0, 56.0, (GREEN_TRIANGLE, scenes.moved(BLUE_SQUARE, slot="middle"))),
    (56.0, 68.0, (GREEN_TRIANGLE, scenes.moved(BLUE_SQUARE, slot="middle"), PURPLE_CIRCLE)),
    (68.0, 80.0, (_shape("triangle", "red", "middle"),)),
    (80.0, 92.0, (_shape("triangle", "blue", "left"), scenes.moved(RED_CIRCLE, slot="right"))),
    (92.0, 100.0, (_shape("star", "purple", "right"),)),
)
DURATION_S = SCRIPT[-1][1]


@dataclass(frozen=True)
class Segment:
    """One stable stretch of the clip, as written to the timeline."""

    start_s: float
    end_s: float
    scene: scenes.Scene

    def as_json(self) -> Dict[str, Any]:
        return {
            "start_s": self.start_s,
            "end_s": self.end_s,
            "shapes": [{"kind": k, "color": c, "slot": s} for c, k, s in self.scene.items()],
            "caption": self.scene.caption(),
            "answers": {q: self.scene.answer(q) for q in DEMO_QUESTIONS},
            "prompts_present": [pid for pid, text in DEMO_PROMPTS.items() if self.scene.matches(_items(text))],
        }


def _items(text: str) -> List[scenes.Item]:
    """Items of a short prompt like "a red circle" (no position)."""
    out: List[scenes.Item] = []
    for part in text.split(" and "):
        _, color, kind = part.split()
        out.append((color, kind, None))
    return out


def segments() -> List[Segment]:
    """The script as segments with their (unbobbed) scenes."""
    return [Segment(a, b, scenes.scene_with(shapes, BACKGROUND, NOISE, NOISE_SEED)) for a, b, shapes in SCRIPT]


def timeline() -> List[Dict[str, Any]]:
    """The JSON timeline: one entry per segment, contiguous from 0 to DURATION_S."""
    return [seg.as_json() for seg in segments()]


def scene_at(t: float) -> scenes.Scene:
    """The scene shown at time t (seconds): the segment's shapes, bobbing in place."""
    for seg in segments():
        if seg.start_s <= t < seg.end_s:
            break
    else:
        raise ValueError("t=%.3f is outside the clip (0..%.1f s)" % (t, DURATION_S))
    bobbed = []
    for i, shape in enumerate(seg.scene.ordered()):
        phase = 2.0 * math.pi * (t / BOB_PERIOD_S + i / 3.0)
        bobbed.append(scenes.moved(shape, y=shape.y + BOB * math.sin(phase)))
    return scenes.scene_with(bobbed, BACKGROUND, NOISE, NOISE_SEED)


def frame_count() -> int:
    return int(round(DURATION_S * FPS))


def frame(index: int) -> np.ndarray:
    """Frame `index` of the clip, BGR uint8 at SIZE."""
    return scene_at(index / FPS).render(SIZE)


def encode(out: Path, crf: int = 28, frames: Optional[Sequence[int]] = None) -> None:
    """Pipe raw BGR frames into ffmpeg: H.264 (libx264), yuv420p, a key frame every 2 s."""
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        raise SystemExit("ffmpeg is not installed (Debian: apt-get install ffmpeg)")
    out.parent.mkdir(parents=True, exist_ok=True)
    cmd = [ffmpeg, "-hide_banner", "-loglevel", "error", "-y", "-f", "rawvideo", "-pix_fmt", "bgr24",
           "-s", "%dx%d" % SIZE, "-r", str(FPS), "-i", "-", "-an", "-c:v", "libx264", "-preset", "medium",
           "-crf", str(crf), "-g", str(2 * FPS), "-pix_fmt", "yuv420p", "-movflags", "+faststart", str(out)]
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE)
    assert proc.stdin is not None
    try:
        for i in frames if frames is not None else range(frame_count()):
            proc.stdin.write(frame(i).tobytes())
    finally:
        proc.stdin.close()
        rc = proc.wait(timeout=120)
    if rc != 0:
        raise SystemExit("ffmpeg failed (exit %d) writing %s" % (rc, out))


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m blip.demo.clip", description=__doc__.split("\n")[0])
    p.add_argument("--out", type=Path, default=Path("samples/demo.mp4"))
    p.add_argument("--timeline", type=Path, help="default: next to --out, .timeline.json")
    p.add_argument("--crf", type=int, default=28)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    timeline_path = args.timeline or args.out.with_name(args.out.name.rsplit(".", 1)[0] + ".timeline.json")
    encode(args.out, args.crf)
    timeline_path.write_text(json.dumps(timeline(), indent=2) + "\n", encoding="utf-8")
    log.info("%s: %d frames, %.1f s, %.2f MB; timeline %s", args.out, frame_count(), DURATION_S,
             args.out.stat().st_size / 1e6, timeline_path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
