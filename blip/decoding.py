"""Greedy decoding over the `decoder_step` graph with its fixed-slot KV cache (blip/graphs.py).

The prefix goes in with one call where the graph takes several tokens (T dynamic), else one call
per token; then one call per generated token.

Semantics follow transformers' greedy `generate`: `max_length` counts the prefix, eos is
suppressed while the sequence is shorter than `min_length`, rows that finished get `pad_id`,
and the loop ends when every row has emitted eos or the length reaches `max_length`.
"""
from typing import Dict, List, Sequence

import numpy as np

from blip.errors import BackendError
from blip.graphs import cross_names
from blip.runtime.base import Graph, static_dim


def _cache_slots(step: Graph, max_length: int) -> int:
    """Cache length L: the graph's static slot count if it has one, else `max_length`."""
    static = static_dim(step, "self_kv", 4, rank=6)
    if static is None:
        return max_length
    if static < max_length - 1:
        raise BackendError(
            "%s: self_kv has %d cache slots, max_length %d needs %d" % (step.path, static, max_length, max_length - 1)
        )
    return static


def _one_token_per_call(step: Graph) -> bool:
    """True where the graph fixes T (static TPU variants: T = 1); False where T is dynamic."""
    return static_dim(step, "input_ids", 1, rank=2) is not None


def cross_feeds(cross_kv: np.ndarray) -> Dict[str, np.ndarray]:
    """decoder_step's per-layer cross inputs as views of decoder_init's [Lyr,2,B,H,S,dh] output:
    each [B,H,S,dh] slice is contiguous, so no byte of the cross cache is copied per step."""
    cross_kv = np.ascontiguousarray(cross_kv, dtype=np.float32)
    names = cross_names(cross_kv.shape[0])
    return {name: cross_kv[i // 2, i % 2] for i, name in enumerate(names)}


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
    position = np.zeros((1,), dtype=np.int64)
    feeds: Dict[str, np.ndarray] = {
        "position": position,
        "self_kv": np.zeros((layers, 2, batch, heads, slots, head_dim), dtype=np.float32),
        "cross_mask": np.ascontiguousarray(cross_mask, dtype=np.float32).reshape(batch, -1),
    }
    feeds.update(cross_feeds(cross_kv))
    out = _prefill(step, feeds, prefix, batch)
    generated = np.full((batch, max_length - len(prefix)), pad_id, dtype=np.int64)
    unfinished = np.ones(batch, dtype=bool)
    for n, cur_len in enumerate(range(len(prefix), max_length)):
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
        feeds["input_ids"] = nxt.reshape(batch, 1)
        feeds["self_kv"] = out["self_kv_out"]
        position[0] = cur_len
        out = step.run(feeds)
    return [_trim(row, eos_id) for row in generated[:, : n + 1].tolist()]


def _prefill(step: Graph, feeds: Dict[str, np.ndarray], prefix: List[int], batch: int) -> Dict[str, np.ndarray]:
    """Feed the prefix into the cache; returns the outputs of the call that fed its last token
    (whose logits choose the first generated token). One call where the graph takes T tokens."""
    position = feeds["position"]
    if not _one_token_per_call(step):
        feeds["input_ids"] = np.tile(np.asarray(prefix, dtype=np.int64), (batch, 1))
        position[0] = 0
        return step.run(feeds)
    out: Dict[str, np.ndarray] = {}
    for pos, token in enumerate(prefix):
        if out:
            feeds["self_kv"] = out["self_kv_out"]
        feeds["input_ids"] = np.full((batch, 1), token, dtype=np.int64)
        position[0] = pos
        out = step.run(feeds)
    return out


def _trim(row: List[int], eos_id: int) -> List[int]:
    """The row up to and including its first eos (finished rows are padded after it)."""
    if eos_id in row:
        return row[: row.index(eos_id) + 1]
    return row
