"""Caption ids of our runtime == transformers' greedy generate on the same pixels."""
import pytest
import torch

from tests.parity.helpers import MARGIN, hf_model, hf_tokenizer, min_margin, pixels, random_frames

pytestmark = pytest.mark.parity


@pytest.fixture(scope="module")
def captioner(loaded_package, ort_runtime):
    from blip.caption import Captioner

    return Captioner(loaded_package, ort_runtime)


@pytest.fixture(scope="module")
def hf_caption(tiny_checkpoints):
    folder = tiny_checkpoints["caption"]
    return hf_model("BlipForConditionalGeneration", folder), hf_tokenizer(folder)


def hf_generate(model, tokenizer, pixel_values, settings):
    """transformers' convention: processor-style "[CLS] a picture of [SEP]" ids; generate puts bos
    first and drops the trailing [SEP]. Returns (generated ids without the prompt, min margin)."""
    prompt = tokenizer(settings["prompt"], return_tensors="pt").input_ids
    out = model.generate(
        pixel_values=torch.from_numpy(pixel_values),
        input_ids=prompt.clone(),
        max_length=settings["max_length"],
        min_length=settings["min_length"],
        do_sample=False,
        num_beams=1,
        output_scores=True,
        return_dict_in_generate=True,
    )
    return out.sequences[0, prompt.shape[1] - 1:].tolist(), min_margin(out.scores)


def test_caption_ids_equal_transformers_generate(loaded_package, captioner, hf_caption):
    model, tokenizer = hf_caption
    settings = loaded_package.task("caption").settings
    seen = set()
    eos = settings["eos_token_id"]
    for frame in random_frames(8, seed=100):
        expected, margin = hf_generate(model, tokenizer, pixels(loaded_package, "caption", frame), settings)
        assert margin > MARGIN, "tiny model has a near-tie; the comparison would test float noise"
        ours = captioner.caption_ids(frame)
        assert ours == expected
        assert captioner.caption(frame) == tokenizer.decode(expected, skip_special_tokens=True).strip()
        seen.add(tuple(ours))
    assert len(seen) >= 4, "captions should depend on the image"
    assert any(row[-1] == eos for row in seen) and any(eos not in row for row in seen), "both endings exercised"


def test_caption_prefix_is_transformers_prompt(captioner, hf_caption):
    _, tokenizer = hf_caption
    ids = tokenizer("a picture of ").input_ids
    assert captioner.prefix_ids == [tokenizer.bos_token_id] + ids[1:-1]
