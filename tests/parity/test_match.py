"""Match scores of our runtime == transformers' ITM head probability; a batch == one by one."""
import numpy as np
import pytest
import torch

from tests.parity.helpers import hf_model, hf_tokenizer, pixels, random_frames

pytestmark = pytest.mark.parity

PROMPTS = {
    "person": "a person standing at the gate",
    "dog": "a dog",
    "car": "a red car parked on the street",
    "sky": "blue sky",
    "door": "the door is open",
    "cats": "two cats sitting next to a tree",
}


@pytest.fixture(scope="module")
def matcher(loaded_package, ort_runtime):
    from blip.match import Matcher

    return Matcher(loaded_package, ort_runtime)


@pytest.fixture(scope="module")
def hf_match(tiny_checkpoints):
    folder = tiny_checkpoints["match"]
    return hf_model("BlipForImageTextRetrieval", folder), hf_tokenizer(folder)


def hf_score(model, tokenizer, pixel_values, text):
    """softmax(itm logits)[:,1] for one unpadded prompt."""
    enc = tokenizer(text, return_tensors="pt")
    with torch.no_grad():
        out = model(
            input_ids=enc.input_ids,
            attention_mask=enc.attention_mask,
            pixel_values=torch.from_numpy(pixel_values),
            use_itm_head=True,
        )
    return float(torch.softmax(out.itm_score, dim=-1)[0, 1])


def test_scores_equal_transformers(loaded_package, matcher, hf_match):
    model, tokenizer = hf_match
    all_scores = []
    for frame in random_frames(2, seed=200):
        ours = matcher.scores(frame, PROMPTS)
        assert list(ours) == list(PROMPTS)
        pv = pixels(loaded_package, "match", frame)
        for key, text in PROMPTS.items():
            assert abs(ours[key] - hf_score(model, tokenizer, pv, text)) <= 1e-4, key
        all_scores.extend(ours.values())
    assert np.ptp(all_scores) > 1e-3, "scores should differ between prompts and images"


def test_batch_equals_one_by_one(matcher):
    frame = random_frames(1, seed=201)[0]
    batch = matcher.scores(frame, PROMPTS)
    for key, text in PROMPTS.items():
        single = matcher.scores(frame, {key: text})
        assert abs(single[key] - batch[key]) <= 1e-5, key


def test_no_prompts_no_work(matcher):
    assert matcher.scores(random_frames(1, seed=202)[0], {}) == {}
