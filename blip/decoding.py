"""Greedy decoding over the `decoder_step` graph with its fixed-slot KV cache (blip/graphs.py).

Semantics follow transformers' greedy `generate`: `max_length` counts the prefix, eos is
suppressed while the sequence is shorter than `min_length`, rows that finished get `pad_id`,
and the loop ends when every row has emitted eos or the length reaches `max_length`.
"""
from typing import Dict, List, Sequence

import numpy as np

from blip.errors import BackendError
from blip.runtime.base import Graph


def _cache_slots(step: Graph, max_length: int) -> int:
    """Cache length L: the graph's static slot count if it has one, else `max_length`."""
    spec = step.inputs.get("self_kv")
    static = spec.shape[4] if spec is not None and len(spec.shape) == 6 else None
    if static is None:
        return max_length
    if static < max_length - 1:
        raise BackendError(
            "%s: self_kv has %d cache slots, max_length %d needs %d" % (step.path, static, max_length, max_length - 1)
        )
    return int(static)


def greedy_decode(
    step: Graph,
    cross_kv: np.ndarray,
    cross_mask: np.ndarray,
    prefix_ids: Sequence[int],
    max_length: int,
    min_length: int,
    eos_id: int,
    pad_id: int,
) -> List[List[int]]:
    """Decode B rows (B = cross_kv.shape[2]) from the same prefix; returns each row's generated ids
    (prefix excluded) up to and including eos, or up to `max_length` when no eos came.

    cross_kv:   f32 [Lyr,2,B,H,S,dh] from decoder_init; its Lyr, H and dh size the self cache.
    cross_mask: [B,S], 1 attend / 0 ignore.
    """
    if cross_kv.ndim != 6:
        raise BackendError("%s: cross_kv must have rank 6, got shape %s" % (step.path, cross_kv.shape))
    prefix = [int(t) for t in prefix_ids]
    if not prefix:
        raise BackendError("%s: decoding needs at least one prefix token" % step.path)
    layers, _, batch, heads, _, head_dim = cross_kv.shape
    if len(prefix) >= max_length:
        return [[] for _ in range(batch)]
    slots = _cache_slots(step, max_length)
    tokens = np.empty((batch, 1), dtype=np.int64)
    position = np.zeros((1,), dtype=np.int64)
    feeds: Dict[str, np.ndarray] = {
        "input_ids": tokens,
        "position": position,
        "self_kv": np.zeros((layers, 2, batch, heads, slots, head_dim), dtype=np.float32),
        "cross_kv": np.ascontiguousarray(cross_kv, dtype=np.float32),
        "cross_mask": np.ascontiguousarray(cross_mask, dtype=np.float32).reshape(batch, -1),
    }
    # The prefix fills slots 0..P-2 without looking at logits; from the last prefix token on,
    # every step's logits choose the next token.
    for pos, token in enumerate(prefix[:-1]):
        tokens[:, 0] = token
        position[0] = pos
        feeds["self_kv"] = step.run(feeds)["self_kv_out"]
    tokens[:, 0] = prefix[-1]
    generated = np.full((batch, max_length - len(prefix)), pad_id, dtype=np.int64)
    unfinished = np.ones(batch, dtype=bool)
    rows = np.arange(batch)
    for n, cur_len in enumerate(range(len(prefix), max_length)):
        position[0] = cur_len - 1
        out = step.run(feeds)
        logits = out["logits"]
        if cur_len < min_length:
            logits = np.array(logits, dtype=np.float32, copy=True)
            logits[:, eos_id] = -np.inf
        nxt = np.argmax(logits, axis=-1).astype(np.int64)
        nxt[~unfinished] = pad_id
        generated[:, n] = nxt
        unfinished &= nxt != eos_id
        if not unfinished.any() or cur_len + 1 >= max_length:
            break
        tokens[rows, 0] = nxt
        feeds["self_kv"] = out["self_kv_out"]
    return [_trim(row, eos_id) for row in generated[:, : n + 1].tolist()]


def _trim(row: List[int], eos_id: int) -> List[int]:
    """The row up to and including its first eos (finished rows are padded after it)."""
    if eos_id in row:
        return row[: row.index(eos_id) + 1]
    return row
