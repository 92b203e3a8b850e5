"""Answer ids of our runtime (questions batched with padding) == transformers' generate per question."""
import pytest
import torch

from tests.parity.helpers import MARGIN, hf_model, hf_tokenizer, min_margin, pixels, random_frames

pytestmark = pytest.mark.parity

QUESTIONS = {
    "color": "what color is the car?",
    "count": "how many people are there?",
    "gate": "is the gate open?",
    "where": "where is the dog sitting?",
    "sky": "is the sky blue?",
}


@pytest.fixture(scope="module")
def answerer(loaded_package, ort_runtime):
    from blip.answer import Answerer

    return Answerer(loaded_package, ort_runtime)


@pytest.fixture(scope="module")
def hf_answer(tiny_checkpoints):
    folder = tiny_checkpoints["answer"]
    return hf_model("BlipForQuestionAnswering", folder), hf_tokenizer(folder)


def hf_generate(model, tokenizer, pixel_values, question, max_length):
    """One unpadded question; returns (answer ids without bos, min margin)."""
    enc = tokenizer(question, return_tensors="pt")
    out = model.generate(
        input_ids=enc.input_ids,
        attention_mask=enc.attention_mask,
        pixel_values=torch.from_numpy(pixel_values),
        max_length=max_length,
        do_sample=False,
        num_beams=1,
        output_scores=True,
        return_dict_in_generate=True,
    )
    return out.sequences[0, 1:].tolist(), min_margin(out.scores)


def test_answer_ids_equal_transformers_generate(loaded_package, answerer, hf_answer):
    model, tokenizer = hf_answer
    max_length = loaded_package.task("answer").settings["max_length"]
    seen = set()
    for frame in random_frames(2, seed=300):
        ours = answerer.answer_ids(frame, QUESTIONS)  # one batch, padded to the longest question
        texts = answerer.answer(frame, QUESTIONS)
        pv = pixels(loaded_package, "answer", frame)
        for key, question in QUESTIONS.items():
            expected, margin = hf_generate(model, tokenizer, pv, question, max_length)
            assert margin > MARGIN, "tiny model has a near-tie; the comparison would test float noise"
            assert ours[key] == expected, key
            assert texts[key] == tokenizer.decode(expected, skip_special_tokens=True).strip()
            seen.add(tuple(expected))
    assert len(seen) >= 3, "answers should depend on the question and image"
    eos = loaded_package.task("answer").settings["eos_token_id"]
    assert any(row[-1] == eos for row in seen) and any(eos not in row for row in seen), "both endings exercised"


def test_batched_equals_single_question(answerer):
    frame = random_frames(1, seed=301)[0]
    batch = answerer.answer_ids(frame, QUESTIONS)
    for key, question in QUESTIONS.items():
        assert answerer.answer_ids(frame, {key: question})[key] == batch[key]
