"""greedy_decode semantics (transformers' greedy generate) on a numpy fake of `decoder_step`."""
from typing import Callable, List

import numpy as np
import pytest

from blip.decoding import greedy_decode
from blip.errors import BackendError
from blip.runtime.base import Graph, TensorSpec

V, EOS, PAD, BOS = 12, 2, 0, 11


class FakeStep(Graph):
    """Writes each token id into its cache slot, then scores the next token with `policy(history)`,
    where history is read back from the cache: a wrong slot or a cache not fed back shows up.
    `width` 1 takes one token per call (static TPU variants); None takes any number (ONNX graphs)."""

    def __init__(self, policy: Callable[[int, List[int]], np.ndarray], slots=None, width=1):
        self.path = "fake_step"
        self.policy = policy
        kv = (1, 2, None, 1, slots, 1)
        self.inputs = {
            "input_ids": TensorSpec("input_ids", (None, width), "int64"),
            "position": TensorSpec("position", (1,), "int64"),
            "self_kv": TensorSpec("self_kv", kv, "float32"),
            "cross_mask": TensorSpec("cross_mask", (None, None), "float32"),
            "cross_key_0": TensorSpec("cross_key_0", (None, 1, None, 1), "float32"),
            "cross_value_0": TensorSpec("cross_value_0", (None, 1, None, 1), "float32"),
        }
        self.outputs = {"logits": TensorSpec("logits", (None, V), "float32"), "self_kv_out": self.inputs["self_kv"]}
        self.calls = []  # (position, tokens fed: per row for width 1, else per row a list)
        self.feeds = []

    def run(self, feeds):
        p = int(feeds["position"][0])
        ids = feeds["input_ids"]
        self.calls.append((p, ids[:, 0].tolist() if ids.shape[1] == 1 else ids.tolist()))
        self.feeds.append(dict(feeds))
        kv = feeds["self_kv"].copy()
        kv[0, 0, :, 0, p:p + ids.shape[1], 0] = ids
        last = p + ids.shape[1] - 1
        logits = np.stack([self.policy(b, [int(t) for t in kv[0, 0, b, 0, : last + 1, 0]]) for b in range(len(ids))])
        return {"logits": logits.astype(np.float32), "self_kv_out": kv}


def prefer(*ranked: int) -> np.ndarray:
    """Logits ranking `ranked` first, second, ..."""
    logits = np.zeros(V, np.float32)
    for i, tok in enumerate(ranked):
        logits[tok] = 10.0 - i
    return logits


def _cross(batch: int) -> np.ndarray:
    return np.zeros((1, 2, batch, 1, 3, 1), np.float32)


def test_min_length_suppresses_eos_until_reached():
    step = FakeStep(lambda b, hist: prefer(EOS, 7))
    out = greedy_decode(step, _cross(1), np.ones((1, 3)), [BOS, 5], max_length=8, min_length=4, eos_id=EOS, pad_id=PAD)
    # lengths 2 and 3 are < 4: eos suppressed; at length 4 eos wins
    assert out == [[7, 7, EOS]]


def test_stops_at_max_length_without_eos_and_feeds_history():
    step = FakeStep(lambda b, hist: prefer(3 + len(hist) % 5, EOS))
    out = greedy_decode(step, _cross(1), np.ones((1, 3)), [BOS, 9, 10], 7, min_length=0, eos_id=EOS, pad_id=PAD)
    assert out == [[6, 7, 3, 4]]  # 7 - 3 prefix tokens, no eos
    assert [p for p, _ in step.calls] == [0, 1, 2, 3, 4, 5]  # the last token is never fed
    assert [t[0] for _, t in step.calls] == [BOS, 9, 10, 6, 7, 3]


def test_batch_rows_finish_separately_and_get_pad():
    def policy(b, hist):
        if b == 0:
            return prefer(EOS) if len(hist) >= 2 else prefer(8)
        return prefer(9, EOS)

    step = FakeStep(policy)
    out = greedy_decode(step, _cross(2), np.ones((2, 3)), [BOS], max_length=5, min_length=1, eos_id=EOS, pad_id=PAD)
    assert out == [[8, EOS], [9, 9, 9, 9]]
    fed_row0 = [tokens[0] for _, tokens in step.calls]
    assert fed_row0 == [BOS, 8, EOS, PAD]  # eos is fed once, then pad


def test_all_rows_done_stops_early():
    step = FakeStep(lambda b, hist: prefer(EOS))
    out = greedy_decode(step, _cross(3), np.ones((3, 3)), [BOS], max_length=20, min_length=0, eos_id=EOS, pad_id=PAD)
    assert out == [[EOS]] * 3 and len(step.calls) == 1


def test_prefix_at_max_length_generates_nothing():
    step = FakeStep(lambda b, hist: prefer(4))
    assert greedy_decode(step, _cross(1), np.ones((1, 3)), [BOS, 4, 4], 3, 0, EOS, PAD) == [[]]
    assert step.calls == []


def test_cache_slots_come_from_max_length_or_the_graph():
    seen = []

    class Recording(FakeStep):
        def run(self, feeds):
            seen.append(feeds["self_kv"].shape)
            return super().run(feeds)

    greedy_decode(Recording(lambda b, h: prefer(4)), _cross(1), np.ones((1, 3)), [BOS], 6, 0, EOS, PAD)
    assert seen[0] == (1, 2, 1, 1, 6, 1)
    with pytest.raises(BackendError, match="self_kv has 3 cache slots, max_length 6 needs 5"):
        greedy_decode(FakeStep(lambda b, h: prefer(4), slots=3), _cross(1), np.ones((1, 3)), [BOS], 6, 0, EOS, PAD)


def test_a_graph_taking_many_tokens_gets_the_prefix_in_one_call():
    policy = lambda b, hist: prefer(3 + len(hist) % 5, EOS)  # noqa: E731
    one_by_one, at_once = FakeStep(policy), FakeStep(policy, width=None)
    want = greedy_decode(one_by_one, _cross(2), np.ones((2, 3)), [BOS, 9, 10], 7, 0, EOS, PAD)
    got = greedy_decode(at_once, _cross(2), np.ones((2, 3)), [BOS, 9, 10], 7, 0, EOS, PAD)
    assert got == want == [[6, 7, 3, 4]] * 2
    assert at_once.calls[0] == (0, [[BOS, 9, 10]] * 2)
    assert [p for p, _ in at_once.calls] == [0, 3, 4, 5]
    assert len(one_by_one.calls) == len(at_once.calls) + 2


def test_cross_inputs_are_views_of_the_decoder_init_output():
    cross = np.arange(2 * 2 * 1 * 1 * 3 * 1, dtype=np.float32).reshape(2, 2, 1, 1, 3, 1)
    step = FakeStep(lambda b, hist: prefer(4))
    greedy_decode(step, cross, np.ones((1, 3)), [BOS], 3, 0, EOS, PAD)
    for feeds in step.feeds:
        assert np.shares_memory(feeds["cross_key_1"], cross) and np.shares_memory(feeds["cross_value_0"], cross)
        np.testing.assert_array_equal(feeds["cross_value_1"], cross[1, 1])
