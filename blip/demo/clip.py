"""The demo clip: a scripted 100 s video of the synthetic world, and its timeline.

    python -m blip.demo.clip --out samples/demo.mp4     (also writes samples/demo.timeline.json)
    python -m blip.demo.clip --seed 3 --out /tmp/other.mp4   (another script, its own timeline)

Seed 0 (the default) is the committed sample's hand-written script; any other seed draws a
script of its own (random_script): other shapes, colours, slots and cut times, the same demo
prompts present in some segments and absent in others, with hard negatives, so settings tuned
on one clip (`blipd tune`) can be checked on another.

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
import random
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
DEFAULT_SEED = 0
"""The seed of SCRIPT, the committed samples/demo.mp4."""
SEGMENT_S = (8.0, 9.0, 10.0, 11.0, 12.0)
"""Lengths a random script's segments are drawn from (the daemon samples about once a second)."""

Script = Tuple[Tuple[float, float, Tuple[Shape, ...]], ...]


def random_script(seed: int, duration_s: float = DURATION_S) -> Script:
    """A script of cuts every 8-12 s up to about `duration_s`: per segment a red circle and a blue
    square each present or not, beside up to two other shapes of random colours (a purple circle
    or a red triangle is a hard negative). Drawn again until every demo prompt is present in some
    segment and absent in another, and two segments in a row never look alike."""
    rng = random.Random(seed)
    while True:
        script = []
        start = 0.0
        previous: Optional[Tuple[Shape, ...]] = None
        while start < duration_s - 1e-6:
            end = min(start + rng.choice(SEGMENT_S), duration_s)
            if duration_s - end < SEGMENT_S[0]:  # no stub at the end
                end = duration_s
            shapes = _random_shapes(rng)
            while previous is not None and _caption(shapes) == _caption(previous):
                shapes = _random_shapes(rng)
            script.append((start, end, shapes))
            start, previous = end, shapes
        present = [[pid for pid, text in DEMO_PROMPTS.items()
                    if scenes.scene_with(shapes).matches(_items(text))] for _, _, shapes in script]
        if all(any(pid in p for p in present) and not all(pid in p for p in present) for pid in DEMO_PROMPTS):
            return tuple(script)


def _random_shapes(rng: random.Random) -> Tuple[Shape, ...]:
    """1-3 shapes of distinct kinds in distinct slots."""
    slots = list(scenes.SLOTS)
    rng.shuffle(slots)
    chosen = []
    if rng.random() < 0.45:
        chosen.append(("circle", "red"))
    if rng.random() < 0.4:
        chosen.append(("square", "blue"))
    others = [k for k in scenes.SHAPES if k not in {kind for kind, _ in chosen}]
    rng.shuffle(others)
    extra = rng.randint(1 if not chosen else 0, min(2, 3 - len(chosen)))
    chosen += [(kind, rng.choice(list(scenes.COLORS))) for kind in others[:extra]]
    return tuple(_shape(kind, color, slot) for (kind, color), slot in zip(chosen, slots))


def _caption(shapes: Sequence[Shape]) -> str:
    return scenes.scene_with(shapes).caption()


def script_for(seed: int, duration_s: Optional[float] = None) -> Script:
    """SCRIPT for DEFAULT_SEED (its duration is fixed), else random_script."""
    if seed == DEFAULT_SEED:
        return SCRIPT
    return random_script(seed, DURATION_S if duration_s is None else duration_s)


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


class Clip:
    """One script made into segments, frames and a timeline."""

    def __init__(self, script: Script = SCRIPT) -> None:
        self.script = script
        self.duration_s = script[-1][1]
        self._segments = [Segment(a, b, scenes.scene_with(shapes, BACKGROUND, NOISE, NOISE_SEED))
                          for a, b, shapes in script]

    def segments(self) -> List[Segment]:
        """The script as segments with their (unbobbed) scenes."""
        return list(self._segments)

    def timeline(self) -> List[Dict[str, Any]]:
        """The JSON timeline: one entry per segment, contiguous from 0 to the clip's duration."""
        return [seg.as_json() for seg in self._segments]

    def scene_at(self, t: float) -> scenes.Scene:
        """The scene shown at time t (seconds): the segment's shapes, bobbing in place."""
        for seg in self._segments:
            if seg.start_s <= t < seg.end_s:
                break
        else:
            raise ValueError("t=%.3f is outside the clip (0..%.1f s)" % (t, self.duration_s))
        bobbed = []
        for i, shape in enumerate(seg.scene.ordered()):
            phase = 2.0 * math.pi * (t / BOB_PERIOD_S + i / 3.0)
            bobbed.append(scenes.moved(shape, y=shape.y + BOB * math.sin(phase)))
        return scenes.scene_with(bobbed, BACKGROUND, NOISE, NOISE_SEED)

    def frame_count(self) -> int:
        return int(round(self.duration_s * FPS))

    def frame(self, index: int) -> np.ndarray:
        """Frame `index` of the clip, BGR uint8 at SIZE."""
        return self.scene_at(index / FPS).render(SIZE)


def segments() -> List[Segment]:
    """The default clip's segments."""
    return Clip().segments()


def timeline() -> List[Dict[str, Any]]:
    """The default clip's JSON timeline (samples/demo.timeline.json)."""
    return Clip().timeline()


def scene_at(t: float) -> scenes.Scene:
    """The default clip's scene at time t."""
    return Clip().scene_at(t)


def frame_count() -> int:
    return Clip().frame_count()


def frame(index: int) -> np.ndarray:
    """Frame `index` of the default clip."""
    return Clip().frame(index)


def encode(out: Path, crf: int = 28, frames: Optional[Sequence[int]] = None, clip: Optional[Clip] = None) -> None:
    """Pipe raw BGR frames into ffmpeg: H.264 (libx264), yuv420p, a key frame every 2 s."""
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        raise SystemExit("ffmpeg is not installed (Debian: apt-get install ffmpeg)")
    out.parent.mkdir(parents=True, exist_ok=True)
    cmd = [ffmpeg, "-hide_banner", "-loglevel", "error", "-y", "-f", "rawvideo", "-pix_fmt", "bgr24",
           "-s", "%dx%d" % SIZE, "-r", str(FPS), "-i", "-", "-an", "-c:v", "libx264", "-preset", "medium",
           "-crf", str(crf), "-g", str(2 * FPS), "-pix_fmt", "yuv420p", "-movflags", "+faststart", str(out)]
    clip = clip or Clip()
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE)
    assert proc.stdin is not None
    try:
        for i in frames if frames is not None else range(clip.frame_count()):
            proc.stdin.write(clip.frame(i).tobytes())
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
    p.add_argument("--seed", type=int, default=DEFAULT_SEED,
                   help="script: %d is the committed sample's, any other draws one (default %%(default)s)" % DEFAULT_SEED)
    p.add_argument("--duration", type=float, default=None,
                   help="seconds, for a drawn script (default %g)" % DURATION_S)
    args = p.parse_args(argv)
    if args.duration is not None and (args.seed == DEFAULT_SEED or args.duration < SEGMENT_S[-1] * 2):
        p.error("--duration needs a seed other than %d and at least %g s" % (DEFAULT_SEED, SEGMENT_S[-1] * 2))
    clip = Clip(script_for(args.seed, args.duration))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    timeline_path = args.timeline or args.out.with_name(args.out.name.rsplit(".", 1)[0] + ".timeline.json")
    encode(args.out, args.crf, clip=clip)
    timeline_path.write_text(json.dumps(clip.timeline(), indent=2) + "\n", encoding="utf-8")
    log.info("%s: %d frames, %.1f s, %.2f MB; timeline %s", args.out, clip.frame_count(), clip.duration_s,
             args.out.stat().st_size / 1e6, timeline_path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
