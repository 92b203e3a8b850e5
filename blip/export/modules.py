"""Torch modules that compute exactly what one graph of layout `split` computes (see blip/graphs.py).

They reuse the Hugging Face BLIP modules' weights and sub-layers but write the attention math
themselves: HF's Cache objects do not trace into ONNX, and the graphs need shapes HF never makes
(the image's cross-attention K/V shared across prompts, a fixed-slot self-attention cache).
BLIP's text layers are BERT post-LN: attention -> dense + residual + LayerNorm, cross-attention
likewise, then the feed-forward block with its own residual + LayerNorm.
"""
import math
from typing import Any, List, Optional, Tuple

import torch
from torch import nn
from torch.nn import functional as F

from blip.graphs import VISION_ATTENTION_FORMS

NEG = torch.finfo(torch.float32).min  # what HF's eager masks add to masked scores


def split_heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    """[B,T,D] -> [B,H,T,dh], with no batch or length baked into the graph."""
    return x.unflatten(-1, (heads, -1)).transpose(1, 2)


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: Optional[torch.Tensor]) -> torch.Tensor:
    """Eager attention in HF's order of operations (matmul, / sqrt(dh), + mask, softmax) -> [B,T,D]."""
    scores = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(q.shape[-1])
    if bias is not None:
        scores = scores + bias
    probs = torch.softmax(scores, dim=-1)
    return torch.matmul(probs, v).transpose(1, 2).flatten(2)


def padding_bias(mask: torch.Tensor) -> torch.Tensor:
    """[B,S] int/float mask (1 attend) -> additive bias [B,1,1,S]."""
    keep = mask[:, None, None, :] > 0
    return torch.where(keep, torch.zeros((), dtype=torch.float32), torch.full((), NEG, dtype=torch.float32))


def cross_kv_of(layer: Any, states: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """The cross-attention keys and values one text layer derives from encoder states: [B,H,S,dh] each."""
    attn = layer.crossattention.self
    heads = attn.num_attention_heads
    return split_heads(attn.key(states), heads), split_heads(attn.value(states), heads)


def self_attention(layer: Any, h: torch.Tensor, bias: Optional[torch.Tensor]) -> torch.Tensor:
    """Bidirectional self-attention sub-block of a text layer (with its residual + LayerNorm)."""
    attn = layer.attention.self
    heads = attn.num_attention_heads
    q, k, v = (split_heads(m(h), heads) for m in (attn.query, attn.key, attn.value))
    return layer.attention.output(attend(q, k, v, bias), h)


def cross_attention(layer: Any, h: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: Optional[torch.Tensor]):
    """Cross-attention sub-block on precomputed keys/values (with its residual + LayerNorm)."""
    attn = layer.crossattention.self
    q = split_heads(attn.query(h), attn.num_attention_heads)
    return layer.crossattention.output(attend(q, k, v, bias), h)


def feed_forward(layer: Any, h: torch.Tensor) -> torch.Tensor:
    """Feed-forward sub-block of a text layer."""
    return layer.output(layer.intermediate(h), h)


class _FusedAttention(torch.autograd.Function):
    """Multi-head attention that exports as one ONNX Runtime `com.microsoft::MultiHeadAttention`
    node (q, k, v as [B,S,D]): ONNX Runtime's CPU kernel, not five graph ops. TPU-MLIR and other
    ONNX consumers do not know the op, so only ONNX Runtime packages use this form."""

    @staticmethod
    def forward(ctx: Any, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int, scale: float) -> torch.Tensor:
        out = F.scaled_dot_product_attention(split_heads(q, heads), split_heads(k, heads), split_heads(v, heads),
                                             scale=scale)
        return out.transpose(1, 2).flatten(2)

    @staticmethod
    def symbolic(g: Any, q: Any, k: Any, v: Any, heads: int, scale: float) -> Any:
        out = g.op("com.microsoft::MultiHeadAttention", q, k, v, num_heads_i=heads, scale_f=scale)
        out.setType(q.type())
        return out


class VisionEncoder(nn.Module):
    """vision: pixel_values [1,3,s,s] -> image_embeds [1,N,D] (ViT last hidden state, post LayerNorm).

    `attention` picks how the ViT's attention is written, over the same weights and maths: "hf"
    (transformers' own forward: portable, what TPU-MLIR compiles), "sdpa"
    (F.scaled_dot_product_attention) or "fused" (ONNX Runtime's MultiHeadAttention contrib op).
    """

    def __init__(self, vision_model: Any, attention: str = "hf") -> None:
        super().__init__()
        if attention not in VISION_ATTENTION_FORMS:
            raise ValueError("vision attention %r is unknown; use one of %s" % (attention, ", ".join(VISION_ATTENTION_FORMS)))
        self.vision = vision_model
        self.attention = attention

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        if self.attention == "hf":
            return self.vision(pixel_values=pixel_values, return_dict=True).last_hidden_state
        attend_one = self._fused if self.attention == "fused" else self._sdpa
        h = self.vision.embeddings(pixel_values)
        for layer in self.vision.encoder.layers:
            h = h + layer.self_attn.projection(attend_one(layer.self_attn, layer.layer_norm1(h)))
            h = h + layer.mlp(layer.layer_norm2(h))
        return self.vision.post_layernorm(h)

    @staticmethod
    def _sdpa(attn: Any, x: torch.Tensor) -> torch.Tensor:
        qkv = attn.qkv(x).unflatten(-1, (3, attn.num_heads, -1)).permute(2, 0, 3, 1, 4)
        return F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2], scale=attn.scale).transpose(1, 2).flatten(2)

    @staticmethod
    def _fused(attn: Any, x: torch.Tensor) -> torch.Tensor:
        q, k, v = attn.qkv(x).chunk(3, dim=-1)
        return _FusedAttention.apply(q, k, v, attn.num_heads, float(attn.scale))


class TextEncoder(nn.Module):
    """BLIP's text encoder over one image: bidirectional self-attention, cross-attention to the image.

    The image K/V are computed once from image_embeds [1,N,D] and broadcast over the batch of texts.
    """

    def __init__(self, text_model: Any) -> None:
        super().__init__()
        self.text = text_model

    def encode(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, image_embeds: torch.Tensor):
        h = self.text.embeddings(input_ids=input_ids)
        bias = padding_bias(attention_mask)
        for layer in self.text.encoder.layer:
            k, v = cross_kv_of(layer, image_embeds)
            h = self_attention(layer, h, bias)
            h = cross_attention(layer, h, k, v, None)
            h = feed_forward(layer, h)
        return h


class MatchText(TextEncoder):
    """text: input_ids/attention_mask [P,T], image_embeds [1,N,D] -> scores [P] (ITM softmax[:,1])."""

    def __init__(self, text_model: Any, itm_head: nn.Module) -> None:
        super().__init__(text_model)
        self.itm_head = itm_head

    def forward(self, input_ids, attention_mask, image_embeds):
        h = self.encode(input_ids, attention_mask, image_embeds)
        return torch.softmax(self.itm_head(h[:, 0, :]), dim=-1)[:, 1]


class QuestionEncoder(TextEncoder):
    """question: input_ids/attention_mask [Q,T], image_embeds [1,N,D] -> question_states [Q,T,D]."""

    def forward(self, input_ids, attention_mask, image_embeds):
        return self.encode(input_ids, attention_mask, image_embeds)


class DecoderInit(nn.Module):
    """decoder_init: encoder_states [B,S,D] -> cross_kv [Lyr,2,B,H,S,dh] for every decoder layer."""

    def __init__(self, decoder: Any) -> None:
        super().__init__()
        self.layers = decoder.bert.encoder.layer

    def forward(self, encoder_states: torch.Tensor) -> torch.Tensor:
        per_layer: List[torch.Tensor] = [torch.stack(cross_kv_of(layer, encoder_states)) for layer in self.layers]
        return torch.stack(per_layer)


class DecoderStep(nn.Module):
    """decoder_step: T tokens per row through a fixed-slot self-attention cache, LM head -> logits.

    Token t of the call sits at position p+t (p = `position`): it writes its K/V into slot p+t (a
    one-hot matmul and a select, not a scatter: static-shape friendly and exact) and attends to
    slots 0..p+t; later slots are masked whatever they hold. The cross K/V come one tensor per
    layer and kind (`cross`: key_0, value_0, key_1, ...), as blip/graphs.py says why.
    """

    def __init__(self, decoder: Any) -> None:
        super().__init__()
        self.embeddings = decoder.bert.embeddings
        self.layers = decoder.bert.encoder.layer
        self.head = decoder.cls

    @staticmethod
    def per_layer(cross_kv: torch.Tensor) -> List[torch.Tensor]:
        """decoder_init's [Lyr,2,B,H,S,dh] as forward's `cross` arguments."""
        return [cross_kv[i, j] for i in range(cross_kv.shape[0]) for j in range(2)]

    def forward(self, input_ids, position, self_kv, cross_mask, *cross):
        emb = self.embeddings
        steps = torch.arange(input_ids.shape[1], dtype=torch.int64)
        positions = position + steps  # [T]
        h = emb.word_embeddings(input_ids) + emb.position_embeddings(positions)[None]
        h = emb.LayerNorm(h)
        slots = torch.arange(self_kv.shape[4], dtype=torch.int64)
        put = (slots[:, None] == positions[None, :]).to(torch.float32)  # [L,T] one-hot
        written = (put.sum(dim=1) > 0)[:, None]  # [L,1]
        visible = torch.where(slots[None, :] <= positions[:, None], torch.zeros((), dtype=torch.float32),
                              torch.full((), NEG))  # [T,L]
        cross_bias = padding_bias(cross_mask)
        # [Lyr,2,...] -> [Lyr*2,...] and one index per tensor: ONNX Runtime makes one Split of it
        self_flat = self_kv.flatten(0, 1)
        new_kv: List[torch.Tensor] = []
        for i, layer in enumerate(self.layers):
            attn = layer.attention.self
            heads = attn.num_attention_heads
            q, k, v = (split_heads(m(h), heads) for m in (attn.query, attn.key, attn.value))
            k_all = torch.where(written, torch.matmul(put, k), self_flat[2 * i])
            v_all = torch.where(written, torch.matmul(put, v), self_flat[2 * i + 1])
            new_kv.append(torch.stack((k_all, v_all)))
            h = layer.attention.output(attend(q, k_all, v_all, visible), h)
            h = cross_attention(layer, h, cross[2 * i], cross[2 * i + 1], cross_bias)
            h = feed_forward(layer, h)
        logits = self.head(h[:, -1:, :])[:, 0, :]
        return logits, torch.stack(new_kv)
