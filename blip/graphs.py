"""The contract between `blip/export` (which writes graphs) and the runtime (which runs them).

Layout ``split`` (ours). Every graph is ONNX (or a bmodel compiled from it); dtypes are float32
for tensors and int64 for ids and masks. Shapes: D hidden size, N image tokens, T text tokens,
Lyr decoder layers, H heads, dh head size, L cache slots (the decode length), S encoder tokens.

caption: vision, decoder_init, decoder_step
match:   vision, text
answer:  vision, question, decoder_init, decoder_step

vision        pixel_values f32 [1,3,size,size]                        -> image_embeds f32 [1,N,D]
text          input_ids i64 [P,T], attention_mask i64 [P,T],
              image_embeds f32 [1,N,D]                                -> scores f32 [P]
              (ITM head, softmax[:,1]; the image's cross-attention K/V are computed once per call
              and broadcast over the P prompts)
question      input_ids i64 [Q,T], attention_mask i64 [Q,T],
              image_embeds f32 [1,N,D]                                -> question_states f32 [Q,T,D]
decoder_init  encoder_states f32 [B,S,D]                              -> cross_kv f32 [Lyr,2,B,H,S,dh]
decoder_step  input_ids i64 [B,T], position i64 [1],
              self_kv f32 [Lyr,2,B,H,L,dh], cross_mask f32 [B,S] (1 attend, 0 ignore),
              cross_key_<i>, cross_value_<i> f32 [B,H,S,dh] for i < Lyr -> logits f32 [B,V],
                                                                         self_kv_out f32 [Lyr,2,B,H,L,dh]
              The T tokens take positions p..p+T-1 (p = `position`): token t writes its keys/values
              into cache slot p+t and attends to slots 0..p+t; later slots are ignored. `logits` are
              the last token's. The caller feeds `self_kv_out` back. T is dynamic in the ONNX graphs
              (the prompt goes in one call) and 1 in static TPU variants (one call per token).
              The cross K/V are one input per layer and kind, not one [Lyr,2,...] tensor: the caller
              passes views of decoder_init's output, where a stacked input made every step copy the
              whole cross cache (42 MB for BLIP-base) to split it inside the graph.

Caption: B=1, encoder_states = image_embeds, cross_mask all ones, prefix "[DEC] a picture of".
Answer: B=Q, encoder_states = question_states, cross_mask = the questions' attention_mask,
prefix "[DEC]". (transformers' generate uses an all-ones mask; with unpadded questions both agree.)

Layout ``seed``: the sophon-demo bmodels as published; see reference/seed-blip.md and
`blip/runtime/sail.py`.
"""
from typing import Dict, List, Tuple

LAYOUT_SPLIT = "split"
LAYOUT_SEED = "seed"
TASKS = ("caption", "match", "answer")
# How a split package's vision graph writes attention (blip.export.modules.VisionEncoder): "fused"
# is ONNX Runtime's com.microsoft MultiHeadAttention, which only ONNX Runtime runs.
VISION_ATTENTION_FORMS = ("hf", "sdpa", "fused")

SPLIT_ROLES: Dict[str, Tuple[str, ...]] = {
    "caption": ("vision", "decoder_init", "decoder_step"),
    "match": ("vision", "text"),
    "answer": ("vision", "question", "decoder_init", "decoder_step"),
}

# role -> (input names with ranks, output names with ranks)
SPLIT_IO: Dict[str, Tuple[Dict[str, int], Dict[str, int]]] = {
    "vision": ({"pixel_values": 4}, {"image_embeds": 3}),
    "text": ({"input_ids": 2, "attention_mask": 2, "image_embeds": 3}, {"scores": 1}),
    "question": ({"input_ids": 2, "attention_mask": 2, "image_embeds": 3}, {"question_states": 3}),
    "decoder_init": ({"encoder_states": 3}, {"cross_kv": 6}),
    "decoder_step": (
        {"input_ids": 2, "position": 1, "self_kv": 6, "cross_mask": 2},  # + cross_key_<i>/cross_value_<i>
        {"logits": 2, "self_kv_out": 6},
    ),
}
CROSS_RANK = 4


def cross_names(layers: int) -> List[str]:
    """decoder_step's per-layer cross-attention inputs, in graph input order."""
    return ["cross_%s_%d" % (kind, i) for i in range(layers) for kind in ("key", "value")]


def split_io(role: str, layers: int = 0) -> Tuple[Dict[str, int], Dict[str, int]]:
    """(inputs, outputs) name -> rank of one role, with decoder_step's cross inputs for `layers`."""
    inputs, outputs = SPLIT_IO[role]
    if role == "decoder_step":
        inputs = dict(inputs, **{name: CROSS_RANK for name in cross_names(layers)})
    return inputs, outputs
