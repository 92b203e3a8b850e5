"""The demo world: deterministic scenes, texts true by construction, a vocabulary that covers them,
and a clip timeline that agrees with what the renderer draws."""
import json
import random
from pathlib import Path

import numpy as np
import pytest

from blip.demo import clip, scenes, vocab
from blip.demo.scenes import Shape

ROOT = Path(__file__).resolve().parents[2]


def _scenes(n, seed="test"):
    rng = random.Random(seed)
    return [scenes.random_scene(rng) for _ in range(n)]


def test_generator_is_deterministic():
    a, b = _scenes(20), _scenes(20)
    assert a == b
    assert np.array_equal(a[3].render((320, 180)), b[3].render((320, 180)))
    assert a != _scenes(20, seed="other")


def test_random_scenes_keep_kinds_and_slots_unique():
    for scene in _scenes(200):
        assert 1 <= len(scene.shapes) <= 3
        assert len({s.kind for s in scene.shapes}) == len(scene.shapes)
        assert len({s.slot for s in scene.shapes}) == len(scene.shapes)


@pytest.mark.parametrize("size", [(640, 360), (320, 180), (96, 96)])
def test_render_draws_each_shape_in_its_slot(size):
    shapes = (Shape("circle", "red", "left"), Shape("square", "blue", "middle"), Shape("star", "yellow", "right"))
    scene = scenes.Scene(shapes=shapes, background=(128, 128, 128), noise=0.0)
    img = scene.render(size)
    assert img.shape == (size[1], size[0], 3) and img.dtype == np.uint8
    for shape in shapes:
        x, y = int(scenes.SLOT_X[shape.slot] * size[0]), int(shape.y * size[1])
        assert np.abs(img[y, x].astype(int) - scenes.COLORS[shape.color]).max() <= 2, shape
    assert np.array_equal(img[2, size[0] // 2], [128, 128, 128])  # background above the shapes


def test_caption_is_ordered_left_to_right():
    scene = scenes.scene_with([Shape("square", "blue", "right"), Shape("circle", "red", "left")])
    assert scene.caption() == "a red circle on the left and a blue square on the right"
    three = scenes.scene_with([Shape("star", "green", "middle")] + list(scene.shapes))
    assert three.caption() == "a red circle on the left and a green star in the middle and a blue square on the right"


def test_answers_agree_with_the_scene():
    scene = scenes.scene_with([Shape("square", "blue", "right"), Shape("circle", "red", "left")])
    assert scene.answer("how many shapes are there?") == "two"
    assert scene.answer("is there a triangle?") == "no"
    assert scene.answer("is there a square?") == "yes"
    assert scene.answer("what color is the circle?") == "red"
    assert scene.answer("what shape is on the right?") == "square"
    with pytest.raises(KeyError):
        scene.answer("what shape is in the middle?")
    rng = random.Random(5)
    for scene in _scenes(100):
        for kind in scenes.QUESTION_KINDS:
            question, answer = scenes.question_of_kind(scene, kind, rng)
            assert scene.answer(question) == answer


def test_itm_pairs_are_true_or_one_attribute_false():
    rng = random.Random(11)
    for scene in _scenes(200):
        items = scenes.true_description(scene, rng)
        assert scene.matches(items)
        false = scenes.perturb(scene, items, rng)
        assert false is not None and not scene.matches(false)
        changed = [(a, b) for a, b in zip(items, false) if a != b]
        assert len(changed) == 1 and sum(x != y for x, y in zip(*changed[0])) == 1
    labels = [scenes.itm_pair(s, rng, positive=i % 2 == 0)[1] for i, s in enumerate(_scenes(50))]
    assert labels.count(1) == labels.count(0) == 25


def test_vocabulary_covers_everything_the_world_says():
    tok = vocab.build_tokenizer()
    ids = vocab.token_ids()
    assert ids["[PAD]"] == 0 and vocab.vocabulary()[-2:] == ["[DEC]", "[ENC]"]
    rng = random.Random(3)
    texts = [scenes.CAPTION_PROMPT] + list(clip.DEMO_PROMPTS.values())
    for scene in _scenes(300):
        texts.append(scene.caption())
        texts += [q for q, _ in scene.qa()] + [a for _, a in scene.qa()]
        texts += [scenes.itm_pair(scene, rng, positive)[0] for positive in (True, False)]
    for text in texts:
        encoding = tok.encode(text)
        assert ids["[UNK]"] not in encoding.ids, (text, encoding.tokens)
    assert tok.encode("a red circle").ids[0] == ids["[CLS]"] and tok.encode("a red circle").ids[-1] == ids["[SEP]"]


def test_timeline_is_contiguous_and_matches_the_renderer():
    segments = clip.timeline()
    assert segments[0]["start_s"] == 0.0 and segments[-1]["end_s"] == clip.DURATION_S
    for before, after in zip(segments, segments[1:]):
        assert before["end_s"] == after["start_s"]
        assert before["caption"] != after["caption"]
    for seg in segments:
        assert seg["end_s"] - seg["start_s"] >= 5.0
        for t in (seg["start_s"], (seg["start_s"] + seg["end_s"]) / 2, seg["end_s"] - 1.0 / clip.FPS):
            shown = clip.scene_at(t)
            assert shown.caption() == seg["caption"]
            assert {q: shown.answer(q) for q in seg["answers"]} == seg["answers"]
    index = int(30.5 * clip.FPS)
    assert np.array_equal(clip.frame(index), clip.scene_at(index / clip.FPS).render(clip.SIZE))


def test_timeline_flips_the_demo_prompts_and_answers():
    segments = clip.timeline()
    for pid in clip.DEMO_PROMPTS:
        present = [pid in seg["prompts_present"] for seg in segments]
        assert any(present) and not all(present), pid
    for question in clip.DEMO_QUESTIONS:
        assert len({seg["answers"][question] for seg in segments}) > 1, question
    red_triangle = [seg for seg in segments if seg["caption"] == "a red triangle in the middle"]
    assert red_triangle and red_triangle[0]["prompts_present"] == []


def test_committed_timeline_is_current():
    path = ROOT / "samples" / "demo.timeline.json"
    assert json.loads(path.read_text(encoding="utf-8")) == clip.timeline()
