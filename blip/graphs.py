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
decoder_step  input_ids i64 [B,1], position i64 [1],
              self_kv f32 [Lyr,2,B,H,L,dh], cross_kv f32 [Lyr,2,B,H,S,dh],
              cross_mask f32 [B,S] (1 attend, 0 ignore)               -> logits f32 [B,V],
                                                                         self_kv_out f32 [Lyr,2,B,H,L,dh]
              The token at `position` p writes its keys/values into cache slot p and attends to
              slots 0..p; slots after p are ignored. The caller feeds `self_kv_out` back.

Caption: B=1, encoder_states = image_embeds, cross_mask all ones, prefix "[DEC] a picture of".
Answer: B=Q, encoder_states = question_states, cross_mask = the questions' attention_mask,
prefix "[DEC]". (transformers' generate uses an all-ones mask; with unpadded questions both agree.)

Layout ``seed``: the sophon-demo bmodels as published; see reference/seed-blip.md and
`blip/runtime/sail.py`.
"""
from typing import Dict, Tuple

LAYOUT_SPLIT = "split"
LAYOUT_SEED = "seed"
TASKS = ("caption", "match", "answer")

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
        {"input_ids": 2, "position": 1, "self_kv": 6, "cross_kv": 6, "cross_mask": 2},
        {"logits": 2, "self_kv_out": 6},
    ),
}
