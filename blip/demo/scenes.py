"""The synthetic world of the demo model: coloured shapes in three slots on a neutral background.

Everything the demo trains on, evaluates on and films comes from here, so captions, questions,
answers and image-text pairs are true by construction. Geometry is in fractions of the frame
(x of the width, y and sizes of the height) so a scene renders at any size; the daemon sees
16:9 video frames that preprocessing stretches to a square, so training renders at 16:9 too.
Needs only numpy and cv2 (tests import it without torch).
"""
import functools
import math
import random
from dataclasses import dataclass, replace
from typing import Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np

# name -> BGR. Kept few and far apart so a 96 px model separates them after video compression.
COLORS: Dict[str, Tuple[int, int, int]] = {
    "red": (40, 40, 215),
    "green": (60, 170, 40),
    "blue": (215, 90, 30),
    "yellow": (30, 215, 235),
    "purple": (150, 40, 140),
}
SHAPES: Tuple[str, ...] = ("circle", "square", "triangle", "star")
SLOTS: Tuple[str, ...] = ("left", "middle", "right")
SLOT_X: Dict[str, float] = {"left": 1.0 / 6.0, "middle": 0.5, "right": 5.0 / 6.0}
SLOT_PHRASE: Dict[str, str] = {"left": "on the left", "middle": "in the middle", "right": "on the right"}
BACKGROUNDS: Tuple[Tuple[int, int, int], ...] = (
    (128, 128, 128), (95, 95, 95), (165, 165, 165), (150, 140, 125), (120, 130, 140), (175, 180, 185),
)
NUMBERS: Tuple[str, ...] = ("zero", "one", "two", "three")
VIDEO_SIZE: Tuple[int, int] = (640, 360)

CAPTION_PROMPT = "a picture of "
Q_COUNT = "how many shapes are there?"
Q_THERE = "is there a {kind}?"
Q_COLOR = "what color is the {kind}?"
Q_SHAPE = "what shape is {where}?"
QUESTION_KINDS: Tuple[str, ...] = ("count", "there", "color", "shape")

# One described shape: (colour, kind, slot or None when the description says no position).
Item = Tuple[str, str, Optional[str]]


@dataclass(frozen=True)
class Shape:
    """One shape; `size` is its radius as a fraction of the frame height."""

    kind: str
    color: str
    slot: str
    size: float = 0.2
    dx: float = 0.0  # offset from the slot centre, fraction of the width
    y: float = 0.5  # centre, fraction of the height
    angle: float = 0.0  # degrees
    shade: Tuple[int, int, int] = (0, 0, 0)  # small per-shape colour jitter, added to COLORS

    def bgr(self) -> Tuple[int, int, int]:
        """The drawing colour: the named colour plus this shape's jitter."""
        base = COLORS[self.color]
        return tuple(int(min(255, max(0, b + s))) for b, s in zip(base, self.shade))  # type: ignore


@dataclass(frozen=True)
class Scene:
    """One to three shapes, at most one per slot and one per kind, so every question about
    "the circle" or "the left" has exactly one answer."""

    shapes: Tuple[Shape, ...]
    background: Tuple[int, int, int] = (128, 128, 128)
    noise: float = 4.0  # std of the per-pixel noise, grey levels
    seed: int = 0  # the noise pattern

    def ordered(self) -> List[Shape]:
        """Shapes from left to right."""
        return sorted(self.shapes, key=lambda s: SLOTS.index(s.slot))

    def items(self) -> List[Item]:
        """What the scene holds, left to right, as description items."""
        return [(s.color, s.kind, s.slot) for s in self.ordered()]

    def caption(self) -> str:
        """The template caption, e.g. "a red circle on the left and a blue square on the right"."""
        return describe(self.items())

    def matches(self, items: Sequence[Item]) -> bool:
        """Whether a description (full or partial) is true of this scene."""
        return all(any(_item_fits(item, s) for s in self.shapes) for item in items)

    def answer(self, question: str) -> str:
        """The one-word answer to any question of `qa()`; KeyError for a question it cannot answer."""
        return dict(self.qa())[question]

    def qa(self) -> List[Tuple[str, str]]:
        """Every question this scene can answer, with its answer."""
        out = [(Q_COUNT, NUMBERS[len(self.shapes)])]
        kinds = {s.kind: s for s in self.shapes}
        for kind in SHAPES:
            out.append((Q_THERE.format(kind=kind), "yes" if kind in kinds else "no"))
        for s in self.ordered():
            out.append((Q_COLOR.format(kind=s.kind), s.color))
            out.append((Q_SHAPE.format(where=SLOT_PHRASE[s.slot]), s.kind))
        return out

    def render(self, size: Tuple[int, int] = VIDEO_SIZE) -> np.ndarray:
        """BGR uint8 image of `size` (width, height)."""
        width, height = size
        img = np.empty((height, width, 3), np.uint8)
        img[:] = self.background
        for shape in self.ordered():
            _draw(img, shape)
        if self.noise > 0:  # grey sensor noise, the same in every channel; cv2.add saturates
            img = cv2.add(img, _noise(self.seed, self.noise, height, width), dtype=cv2.CV_8U)
        return img


@functools.lru_cache(maxsize=4)
def _noise(seed: int, std: float, height: int, width: int) -> np.ndarray:
    """The noise image of a seed, read-only. Cached: a clip's frames all share one (drawing it
    was 85 % of rendering a 640x360 frame), while training's random seeds only cost a miss."""
    noise = np.random.default_rng(seed).standard_normal((height, width), dtype=np.float32)
    noise *= std
    merged = cv2.merge([noise, noise, noise])
    merged.setflags(write=False)
    return merged


def _item_fits(item: Item, shape: Shape) -> bool:
    color, kind, slot = item
    return shape.color == color and shape.kind == kind and (slot is None or shape.slot == slot)


def describe(items: Sequence[Item]) -> str:
    """Text of a description: "a red circle", "a red circle on the left and a blue square"."""
    parts = []
    for color, kind, slot in items:
        parts.append("a %s %s" % (color, kind) + ("" if slot is None else " " + SLOT_PHRASE[slot]))
    return " and ".join(parts)


def slot_question(slot: str) -> str:
    """"what shape is on the left?" and its siblings."""
    return Q_SHAPE.format(where=SLOT_PHRASE[slot])


# ---------------------------------------------------------------- drawing

_SHIFT = 4  # cv2 fixed-point bits: sub-pixel positions keep small renders faithful


def _fixed(points: np.ndarray) -> np.ndarray:
    return np.round(points * (1 << _SHIFT)).astype(np.int32)


def _polygon(cx: float, cy: float, radii: Sequence[float], angle: float, start: float) -> np.ndarray:
    n = len(radii)
    out = []
    for i, r in enumerate(radii):
        a = math.radians(start + angle + 360.0 * i / n)
        out.append((cx + r * math.cos(a), cy + r * math.sin(a)))
    return np.array(out, np.float64)


def _draw(img: np.ndarray, shape: Shape) -> None:
    height, width = img.shape[:2]
    cx = (SLOT_X[shape.slot] + shape.dx) * width
    cy = shape.y * height
    r = shape.size * height
    color = shape.bgr()
    if shape.kind == "circle":
        center = (int(round(cx * (1 << _SHIFT))), int(round(cy * (1 << _SHIFT))))
        cv2.circle(img, center, int(round(r * (1 << _SHIFT))), color, -1, cv2.LINE_AA, _SHIFT)
        return
    if shape.kind == "square":
        pts = _polygon(cx, cy, [r * 1.2] * 4, shape.angle, 45.0)
    elif shape.kind == "triangle":
        pts = _polygon(cx, cy + 0.2 * r, [r * 1.3] * 3, shape.angle, -90.0)
    elif shape.kind == "star":
        pts = _polygon(cx, cy + 0.08 * r, [r * 1.3, r * 0.6] * 5, shape.angle, -90.0)
    else:
        raise ValueError("unknown shape kind %r" % shape.kind)
    cv2.fillPoly(img, [_fixed(pts)], color, cv2.LINE_AA, _SHIFT)


# ---------------------------------------------------------------- random scenes


def random_shape(rng: random.Random, kind: str, color: str, slot: str) -> Shape:
    """A shape of the given label with random size, offset, tilt and shade."""
    return Shape(
        kind=kind, color=color, slot=slot,
        size=rng.uniform(0.15, 0.22),
        dx=rng.uniform(-0.02, 0.02),
        y=rng.uniform(0.32, 0.68),
        angle=rng.uniform(-12.0, 12.0),
        shade=tuple(rng.randint(-18, 18) for _ in range(3)),  # type: ignore[arg-type]
    )


def random_scene(rng: random.Random, max_shapes: int = 3) -> Scene:
    """A scene with 1..max_shapes shapes of distinct kinds in distinct slots."""
    n = rng.randint(1, max_shapes)
    slots = rng.sample(SLOTS, n)
    kinds = rng.sample(SHAPES, n)
    shapes = tuple(random_shape(rng, k, rng.choice(list(COLORS)), s) for k, s in zip(kinds, slots))
    bg = tuple(min(255, max(0, c + rng.randint(-10, 10))) for c in rng.choice(BACKGROUNDS))
    return Scene(shapes=shapes, background=bg, noise=rng.uniform(1.0, 8.0),  # type: ignore[arg-type]
                 seed=rng.getrandbits(32))


# ---------------------------------------------------------------- image-text pairs


def true_description(scene: Scene, rng: random.Random) -> List[Item]:
    """A true description: the full caption, or one or two shapes with or without positions."""
    items = scene.items()
    form = rng.randrange(4)
    if form == 0:
        return items
    picked = rng.sample(items, min(len(items), 1 if form < 3 else 2))
    picked.sort(key=lambda it: SLOTS.index(it[2] or "left"))
    if form == 1 or form == 3:
        picked = [(c, k, None) for c, k, _ in picked]
    return picked


def perturb(scene: Scene, items: Sequence[Item], rng: random.Random) -> Optional[List[Item]]:
    """`items` with one attribute of one item changed (colour, kind or position) so that the
    description becomes false; None when no such change exists. The attribute is drawn first, each
    equally likely, so kinds (3 alternatives) are changed as often as colours (4)."""
    by_attribute: Dict[str, List[Tuple[int, Item]]] = {"color": [], "kind": [], "slot": []}
    for i, (color, kind, slot) in enumerate(items):
        by_attribute["color"] += [(i, (c, kind, slot)) for c in COLORS if c != color]
        by_attribute["kind"] += [(i, (color, k, slot)) for k in SHAPES if k != kind]
        if slot is not None:
            by_attribute["slot"] += [(i, (color, kind, s)) for s in SLOTS if s != slot]
    attributes = [a for a, options in by_attribute.items() if options]
    rng.shuffle(attributes)
    for attribute in attributes:
        options = by_attribute[attribute]
        rng.shuffle(options)
        for i, new in options:
            candidate = list(items)
            candidate[i] = new
            if not scene.matches(candidate):
                return candidate
    return None


def itm_pair(scene: Scene, rng: random.Random, positive: bool) -> Tuple[str, int]:
    """(text, label): a true description, or a one-attribute-changed false one."""
    items = true_description(scene, rng)
    if positive:
        return describe(items), 1
    false = perturb(scene, items, rng)
    while false is None:  # cannot happen with >1 colour, but stay total
        false = perturb(scene, true_description(scene, rng), rng)
    return describe(false), 0


def question_of_kind(scene: Scene, kind: str, rng: random.Random) -> Tuple[str, str]:
    """A random (question, answer) of one of QUESTION_KINDS; "there" is yes half the time."""
    if kind == "count":
        return Q_COUNT, NUMBERS[len(scene.shapes)]
    if kind == "there":
        present = [s.kind for s in scene.shapes]
        absent = [k for k in SHAPES if k not in present]
        if absent and (rng.random() < 0.5 or not present):
            return Q_THERE.format(kind=rng.choice(absent)), "no"
        return Q_THERE.format(kind=rng.choice(present)), "yes"
    shape = rng.choice(scene.shapes)
    if kind == "color":
        return Q_COLOR.format(kind=shape.kind), shape.color
    if kind == "shape":
        return slot_question(shape.slot), shape.kind
    raise ValueError("unknown question kind %r" % kind)


def world_texts() -> List[str]:
    """Every word the world can emit, as short texts (for the vocabulary and its test)."""
    texts = [CAPTION_PROMPT, Q_COUNT, " ".join(NUMBERS[1:]), "yes no", " and ".join(SLOT_PHRASE.values())]
    texts += [Q_THERE.format(kind=k) for k in SHAPES] + [Q_COLOR.format(kind=k) for k in SHAPES]
    texts += [slot_question(s) for s in SLOTS]
    texts += ["a %s %s" % (c, k) for c in COLORS for k in SHAPES]
    return texts


def scene_with(shapes: Sequence[Shape], background: Tuple[int, int, int] = (128, 128, 128),
               noise: float = 3.0, seed: int = 7) -> Scene:
    """A scripted scene (the clip builds its segments with this)."""
    return Scene(shapes=tuple(shapes), background=background, noise=noise, seed=seed)


def moved(shape: Shape, **changes: object) -> Shape:
    """A copy of `shape` with some fields changed (a shape that moves keeps its look)."""
    return replace(shape, **changes)  # type: ignore[arg-type]
