"""Sample inputs for tracing and checking each graph: two sizes per role, so frozen dims show up."""
from typing import Any, Dict, Tuple

import torch

from blip.graphs import cross_names

Feeds = Dict[str, torch.Tensor]


class Dims:
    """The sizes a task's graphs need, read from the HF config."""

    def __init__(self, config: Any) -> None:
        text, vision = config.text_config, config.vision_config
        self.vocab = int(text.vocab_size)
        self.hidden = int(text.hidden_size)
        self.heads = int(text.num_attention_heads)
        self.head_dim = self.hidden // self.heads
        self.layers = int(text.num_hidden_layers)
        self.image_size = int(vision.image_size)
        self.image_tokens = (self.image_size // int(vision.patch_size)) ** 2 + 1
        self.vision_hidden = int(vision.hidden_size)
        self.pad_id = int(text.pad_token_id)
        # width of what the decoder cross-attends to (image embeds or question states)
        self.encoder_hidden = int(getattr(text, "encoder_hidden_size", self.hidden))


def _ids(gen: torch.Generator, dims: Dims, rows: int, length: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """Random ids with right padding on every row but the first (ids 0 where the mask is 0)."""
    ids = torch.randint(1, dims.vocab, (rows, length), generator=gen)
    mask = torch.ones(rows, length, dtype=torch.int64)
    for row in range(1, rows):
        mask[row, length - row:] = 0
    ids = torch.where(mask > 0, ids, torch.full_like(ids, dims.pad_id))
    return ids, mask


def pixel_values(dims: Dims, seed: int = 0) -> Feeds:
    gen = torch.Generator().manual_seed(seed)
    return {"pixel_values": torch.randn(1, 3, dims.image_size, dims.image_size, generator=gen)}


def text_feeds(dims: Dims, image_embeds: torch.Tensor, rows: int, length: int, seed: int) -> Feeds:
    """Feeds of `text` and `question`: [rows,length] ids with padding, one image."""
    ids, mask = _ids(torch.Generator().manual_seed(seed), dims, rows, length)
    return {"input_ids": ids, "attention_mask": mask, "image_embeds": image_embeds}


def decoder_init_feeds(dims: Dims, rows: int, length: int, seed: int) -> Feeds:
    gen = torch.Generator().manual_seed(seed)
    return {"encoder_states": torch.randn(rows, length, dims.encoder_hidden, generator=gen)}


def decoder_step_feeds(dims: Dims, rows: int, slots: int, position: int, tokens: int, length: int,
                       seed: int) -> Feeds:
    """One call of `tokens` tokens from `position` on, with a random cache; padded encoder rows
    after the first; the cross K/V one tensor per layer and kind, as the graph takes them."""
    gen = torch.Generator().manual_seed(seed)
    ids, mask = _ids(gen, dims, rows, max(length, tokens))
    kv = (dims.layers, 2, rows, dims.heads)
    cross = torch.randn(*kv, length, dims.head_dim, generator=gen)
    feeds = {
        "input_ids": ids[:, :tokens].clone(),
        "position": torch.tensor([position], dtype=torch.int64),
        "self_kv": torch.randn(*kv, slots, dims.head_dim, generator=gen),
        "cross_mask": mask[:, :length].to(torch.float32),
    }
    feeds.update(zip(cross_names(dims.layers), (cross[i, j] for i in range(dims.layers) for j in range(2))))
    return feeds


def role_feeds(role: str, dims: Dims, image_embeds: torch.Tensor) -> Tuple[Feeds, Feeds]:
    """(trace feeds, check feeds) of one role; the check feeds use other batch/length sizes."""
    if role == "vision":
        return pixel_values(dims, 0), pixel_values(dims, 1)
    if role in ("text", "question"):
        return text_feeds(dims, image_embeds, 2, 5, 2), text_feeds(dims, image_embeds, 3, 9, 3)
    if role == "decoder_init":
        return decoder_init_feeds(dims, 2, 6, 4), decoder_init_feeds(dims, 3, dims.image_tokens, 5)
    if role == "decoder_step":
        # traced with 2 tokens, checked with 3 at another position: T, B, L and S all vary
        return decoder_step_feeds(dims, 2, 4, 1, 2, 6, 6), decoder_step_feeds(dims, 3, 9, 5, 3, 11, 7)
    raise ValueError("unknown role %r" % role)
