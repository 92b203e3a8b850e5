"""Check our torch modules against the Hugging Face forward passes they replace.

The ONNX check (onnx_export.verify_graph) only proves graph == module; this proves module == HF on the
actual checkpoint, so a transformers change in BLIP's maths fails the export instead of the captions.
"""
from typing import Any, Dict

import torch

from blip.errors import ExportError
from blip.export import modules
from blip.export.samples import Dims, decoder_init_feeds, text_feeds

TOLERANCE = 1e-4  # relative to max(1, max |reference|); both sides are PyTorch fp32


def _compare(what: str, ours: torch.Tensor, theirs: torch.Tensor, folder: Any) -> float:
    if ours.shape != theirs.shape:
        raise ExportError(
            "checkpoint %s: %s shape %s, transformers gives %s" % (folder, what, tuple(ours.shape), tuple(theirs.shape))
        )
    diff = float((ours - theirs).abs().max())
    allowed = TOLERANCE * max(1.0, float(theirs.abs().max()))
    if not diff <= allowed:
        raise ExportError(
            "checkpoint %s: %s differs from transformers by %.3g (allowed %.3g)" % (folder, what, diff, allowed)
        )
    return diff


def check_vision(module: modules.VisionEncoder, model: Any, pixel_values: torch.Tensor, folder: Any) -> float:
    with torch.no_grad():
        theirs = model.vision_model(pixel_values=pixel_values).last_hidden_state
        return _compare("vision", module(pixel_values), theirs, folder)


def _hf_text_encoder(model: Any, feeds: Dict[str, torch.Tensor]) -> torch.Tensor:
    """HF text encoder over P texts and one image repeated P times (as HF callers do)."""
    image = feeds["image_embeds"].expand(feeds["input_ids"].shape[0], -1, -1)
    return model.text_encoder(
        input_ids=feeds["input_ids"],
        attention_mask=feeds["attention_mask"],
        encoder_hidden_states=image,
        encoder_attention_mask=torch.ones(image.shape[:2], dtype=torch.int64),
    ).last_hidden_state


def check_text(module: modules.MatchText, model: Any, dims: Dims, image_embeds: torch.Tensor, folder: Any) -> float:
    feeds = text_feeds(dims, image_embeds, 3, 7, 21)
    with torch.no_grad():
        logits = model.itm_head(_hf_text_encoder(model, feeds)[:, 0, :])
        theirs = torch.softmax(logits, dim=-1)[:, 1]
        return _compare("text scores", module(**feeds), theirs, folder)


def check_question(
    module: modules.QuestionEncoder, model: Any, dims: Dims, image_embeds: torch.Tensor, folder: Any
) -> float:
    feeds = text_feeds(dims, image_embeds, 3, 7, 22)
    with torch.no_grad():
        return _compare("question states", module(**feeds), _hf_text_encoder(model, feeds), folder)


def check_decoder(init: modules.DecoderInit, step: modules.DecoderStep, model: Any, dims: Dims, folder: Any) -> float:
    """Logits through the fixed-slot cache (a 3-token prompt in one call, then one token per call)
    == HF decoder logits over the whole sequence, from the prompt's last token on.

    Row 1 has padded encoder states. transformers' BLIP text attention drops the encoder mask on its
    way to the cross-attention (BlipTextAttention never passes it on), so HF attends to padding; the
    reference for a padded row is therefore HF on that row's unpadded states, which is what the
    mask means (and what the original BLIP does).
    """
    states = decoder_init_feeds(dims, 2, 6, 23)["encoder_states"]
    mask = torch.ones(2, 6, dtype=torch.int64)
    mask[1, 4:] = 0
    length, prompt = 5, 3
    ids = torch.randint(1, dims.vocab, (2, length), generator=torch.Generator().manual_seed(24))
    with torch.no_grad():
        theirs = torch.cat([
            model.text_decoder(
                input_ids=ids[row:row + 1],
                encoder_hidden_states=states[row:row + 1, : int(mask[row].sum())],
                use_cache=False,
            ).logits
            for row in range(2)
        ])
        cross = step.per_layer(init(states))
        self_kv = torch.zeros(dims.layers, 2, 2, dims.heads, length, dims.head_dim)
        logits, self_kv = step(ids[:, :prompt], torch.tensor([0]), self_kv, mask.float(), *cross)
        ours = [logits]
        for pos in range(prompt, length):
            logits, self_kv = step(ids[:, pos:pos + 1], torch.tensor([pos]), self_kv, mask.float(), *cross)
            ours.append(logits)
        return _compare("decoder logits", torch.stack(ours, dim=1), theirs[:, prompt - 1:], folder)
