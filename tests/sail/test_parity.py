"""Tiny random BLIP on the sail double == transformers: layout seed (blip/seed.py over bmodels
packaged by package_seed) and layout split (static-shape graphs, the split task classes). Only the
runtime differs from the ONNX Runtime path; the "bmodels" are the exported ONNX graphs."""
import numpy as np
import pytest

pytestmark = [pytest.mark.sail, pytest.mark.parity]

PROMPTS = {"dog": "a red dog", "street": "two people on the street", "gate": "the gate is open"}
QUESTIONS = {"color": "what color is the car?", "gate": "is the gate open?", "count": "how many people are there?"}


@pytest.fixture(scope="module")
def reference(checkpoints):
    from blip.export.checkpoint import load_checkpoint

    return {task: load_checkpoint(folder, task) for task, folder in checkpoints.items()}


@pytest.fixture(scope="module")
def frames():
    rng = np.random.default_rng(7)
    return [rng.integers(0, 256, (48, 80, 3), dtype=np.uint8), rng.integers(0, 256, (90, 60, 3), dtype=np.uint8)]


def hf_caption_ids(ckpt, pixels):
    """transformers' greedy generate from "[DEC] a picture of": generated ids after the prompt."""
    import torch

    prompt = ckpt.tokenizer("a picture of ", return_tensors="pt").input_ids
    with torch.no_grad():
        out = ckpt.model.generate(pixel_values=torch.from_numpy(pixels), input_ids=prompt, max_length=20, min_length=5)
    return out[0, prompt.shape[1] - 1:].tolist()


def hf_score(ckpt, pixels, text, padded):
    import torch

    kwargs = dict(padding="max_length", max_length=35) if padded else {}
    enc = ckpt.tokenizer(text, return_tensors="pt", **kwargs)
    with torch.no_grad():
        out = ckpt.model(input_ids=enc.input_ids, attention_mask=enc.attention_mask,
                         pixel_values=torch.from_numpy(pixels), use_itm_head=True)
    return float(torch.softmax(out.itm_score, dim=-1)[0, 1])


def hf_answer_ids(ckpt, pixels, text, padded):
    """Answer ids without bos. The seed pads questions to 35 and its decoder attends to all 35."""
    import torch

    kwargs = dict(padding="max_length", max_length=35) if padded else {}
    enc = ckpt.tokenizer(text, return_tensors="pt", **kwargs)
    with torch.no_grad():
        out = ckpt.model.generate(input_ids=enc.input_ids, attention_mask=enc.attention_mask,
                                  pixel_values=torch.from_numpy(pixels), max_length=10, min_length=1)
    return out[0, 1:].tolist()


def until_eos(ids, eos):
    """transformers' ids up to and including eos (generate stops there; the seed graphs pad on)."""
    out = []
    for t in ids:
        out.append(t)
        if t == eos:
            break
    return out


def sail_runtime(sail, io="tensor", **profile):
    from blip.runtime.sail import SailRuntime

    sail._configure(**profile)
    return SailRuntime(io=io)


@pytest.mark.parametrize("io,f32_names", [("tensor", True), ("numpy", False)])
def test_seed_caption_equals_transformers(seed_package, reference, frames, sail, io, f32_names):
    from blip.seed import SeedCaptioner

    captioner = SeedCaptioner(seed_package, sail_runtime(sail, io, f32_names=f32_names))
    ckpt = reference["caption"]
    eos = ckpt.model.config.text_config.sep_token_id
    for frame in frames:
        pixels = captioner.pixels(frame)
        ids = captioner.caption_ids_from_pixels(pixels)
        assert ids == until_eos(hf_caption_ids(ckpt, pixels), eos)
        expected = ckpt.tokenizer.decode(captioner.prefix_ids + ids, skip_special_tokens=True)[len("a picture of "):]
        assert captioner.text(ids) == expected.strip()


def test_seed_match_equals_transformers(seed_package, reference, frames, sail):
    from blip.seed import SeedMatcher

    matcher = SeedMatcher(seed_package, sail_runtime(sail, ids_dtype="INT32"))
    for frame in frames:
        pixels = matcher.pixels(frame)
        scores = matcher.scores_from_pixels(pixels, PROMPTS)
        for key, text in PROMPTS.items():
            assert scores[key] == pytest.approx(hf_score(reference["match"], pixels, text, padded=True), abs=1e-4)


def test_seed_answer_equals_transformers(seed_package, reference, frames, sail):
    from blip.seed import SeedAnswerer

    answerer = SeedAnswerer(seed_package, sail_runtime(sail))
    ckpt = reference["answer"]
    text_config = ckpt.model.config.text_config
    for frame in frames:
        pixels = answerer.pixels(frame)
        got = answerer.answer_ids_from_pixels(pixels, QUESTIONS)
        for key, text in QUESTIONS.items():
            expected = until_eos(hf_answer_ids(ckpt, pixels, text, padded=True), text_config.sep_token_id)
            assert got[key] == expected, key
            assert answerer.text(got[key]) == ckpt.tokenizer.decode(expected, skip_special_tokens=True).strip()


def test_seed_package_runs_through_the_engine_api(seed_package, frames, sail):
    """What the engine calls: caption and match share one preprocessing (embed_key), answer its own."""
    from blip.seed import SEED_TASKS

    runtime = sail_runtime(sail)
    tasks = {name: cls(seed_package, runtime) for name, cls in SEED_TASKS.items()}
    assert tasks["caption"].embed_key == tasks["match"].embed_key != tasks["answer"].embed_key
    pixels = tasks["caption"].embed(frames[0])
    assert isinstance(tasks["caption"].caption_from_pixels(pixels), str)
    assert set(tasks["match"].scores_from_pixels(pixels, PROMPTS)) == set(PROMPTS)
    answers = tasks["answer"].answer(frames[0], QUESTIONS)
    assert set(answers) == set(QUESTIONS)


def test_split_layout_on_sail_equals_transformers(split_package, reference, frames, sail):
    from blip.answer import Answerer
    from blip.caption import Captioner
    from blip.match import Matcher
    from blip.preprocess import preprocess

    runtime = sail_runtime(sail, f32_names=True)
    captioner, matcher, answerer = (cls(split_package, runtime) for cls in (Captioner, Matcher, Answerer))
    for frame in frames[:1]:  # one frame: the split maths are the ONNX Runtime parity tests' subject
        px = preprocess(frame, captioner.spec.image_size, split_package.preprocess.mean, split_package.preprocess.std)
        ckpt = reference["caption"]
        eos = ckpt.model.config.text_config.sep_token_id
        assert captioner.caption_ids_from_pixels(px) == until_eos(hf_caption_ids(ckpt, px), eos)
        # the static graphs take one prompt / question per call: the tasks split the batch for them
        scores = matcher.scores_from_pixels(px, PROMPTS)
        answers = answerer.answer_ids_from_pixels(px, QUESTIONS)
        assert len(PROMPTS) > 1 and len(QUESTIONS) > 1
        for key, text in PROMPTS.items():
            assert scores[key] == pytest.approx(hf_score(reference["match"], px, text, padded=False), abs=1e-4)
        for key, text in QUESTIONS.items():
            assert answers[key] == until_eos(hf_answer_ids(reference["answer"], px, text, padded=False), eos)
