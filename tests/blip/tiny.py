"""Tiny hand-made ONNX graphs that follow blip/graphs.py, a numpy model of the same maths, and a
package writer. They test the runtime plumbing (names, shapes, cache slots, batching), not BLIP.

Toy model (D = H*dh):
  vision        image_embeds = pixels[1,3,s*s]^T @ Wv
  text          score_p = sigmoid(sum_t E2[id_pt] * mask_pt . mean_n image_embeds)
  question      states = (E3[ids] + mean_n image_embeds) * mask
  decoder_init  cross_kv[l,k] = (encoder_states @ Wc) split into heads, same for every l, k
  decoder_step  slot p <- E[token]; h = sum_{j<=p} (j+1) * slot_j;
                c = sum_s mask_s * cross_key_0[s]; logits = (h + c) @ Wo
The (j+1) weights make the result depend on which slot each token went to.
"""
import hashlib
import os
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence

import numpy as np
import onnx
import yaml
from onnx import TensorProto, helper, numpy_helper

F, I64 = TensorProto.FLOAT, TensorProto.INT64
OPSET = 13
WORDS = ["a", "picture", "of", "the", "cat", "##s", "dog", "is", "there", "gate", "open", "person",
         "red", "car", "?", ".", "yes", "no", "two", "on", "street", "standing", "at", "blue"]
VOCAB = ["[PAD]", "[unused0]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + WORDS
MEAN = [0.48145466, 0.4578275, 0.40821073]
STD = [0.26862954, 0.26130258, 0.27577711]


@dataclass
class Weights:
    """All weights of the toy model (V includes [DEC] and [ENC])."""

    size: int = 8
    dim: int = 8
    heads: int = 2
    layers: int = 2
    vocab: int = len(VOCAB) + 2
    seed: int = 0

    def __post_init__(self) -> None:
        rng = np.random.default_rng(self.seed)
        f = lambda *shape: rng.standard_normal(shape).astype(np.float32)  # noqa: E731
        self.wv, self.wc, self.wo = f(3, self.dim), f(self.dim, self.dim), f(self.dim, self.vocab)
        self.e, self.e2, self.e3 = f(self.vocab, self.dim), f(self.vocab, self.dim) * 0.3, f(self.vocab, self.dim)

    @property
    def head_dim(self) -> int:
        return self.dim // self.heads


def _init(name: str, value: np.ndarray) -> onnx.TensorProto:
    return numpy_helper.from_array(np.asarray(value), name)


def _model(nodes, inputs, outputs, inits, path: str) -> str:
    graph = helper.make_graph(nodes, os.path.basename(path), inputs, outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, path)
    return path


def vision_graph(w: Weights, path: str) -> str:
    s = w.size
    nodes = [
        helper.make_node("Reshape", ["pixel_values", "shape"], ["flat"]),
        helper.make_node("Transpose", ["flat"], ["tokens"], perm=[0, 2, 1]),
        helper.make_node("MatMul", ["tokens", "wv"], ["image_embeds"]),
    ]
    inits = [_init("shape", np.array([1, 3, s * s], np.int64)), _init("wv", w.wv)]
    return _model(nodes, [helper.make_tensor_value_info("pixel_values", F, [1, 3, s, s])],
                  [helper.make_tensor_value_info("image_embeds", F, [1, s * s, w.dim])], inits, path)


def _text_inputs() -> List[onnx.ValueInfoProto]:
    return [helper.make_tensor_value_info("input_ids", I64, ["P", "T"]),
            helper.make_tensor_value_info("attention_mask", I64, ["P", "T"]),
            helper.make_tensor_value_info("image_embeds", F, [1, "N", "D"])]


def text_graph(w: Weights, path: str) -> str:
    nodes = [
        helper.make_node("Gather", ["e2", "input_ids"], ["emb"]),
        helper.make_node("Cast", ["attention_mask"], ["maskf"], to=F),
        helper.make_node("Unsqueeze", ["maskf", "ax2"], ["mask3"]),
        helper.make_node("Mul", ["emb", "mask3"], ["masked"]),
        helper.make_node("ReduceSum", ["masked", "ax1"], ["feat"], keepdims=0),
        helper.make_node("ReduceMean", ["image_embeds"], ["img"], axes=[1], keepdims=0),
        helper.make_node("Mul", ["feat", "img"], ["prod"]),
        helper.make_node("ReduceSum", ["prod", "ax1"], ["logit"], keepdims=0),
        helper.make_node("Sigmoid", ["logit"], ["scores"]),
    ]
    inits = [_init("e2", w.e2), _init("ax1", np.array([1], np.int64)), _init("ax2", np.array([2], np.int64))]
    return _model(nodes, _text_inputs(), [helper.make_tensor_value_info("scores", F, ["P"])], inits, path)


def question_graph(w: Weights, path: str) -> str:
    nodes = [
        helper.make_node("Gather", ["e3", "input_ids"], ["emb"]),
        helper.make_node("ReduceMean", ["image_embeds"], ["img"], axes=[1], keepdims=1),
        helper.make_node("Add", ["emb", "img"], ["sum"]),
        helper.make_node("Cast", ["attention_mask"], ["maskf"], to=F),
        helper.make_node("Unsqueeze", ["maskf", "ax2"], ["mask3"]),
        helper.make_node("Mul", ["sum", "mask3"], ["question_states"]),
    ]
    inits = [_init("e3", w.e3), _init("ax2", np.array([2], np.int64))]
    out = helper.make_tensor_value_info("question_states", F, ["Q", "T", w.dim])
    return _model(nodes, _text_inputs(), [out], inits, path)


def init_graph(w: Weights, path: str) -> str:
    nodes = [
        helper.make_node("MatMul", ["encoder_states", "wc"], ["proj"]),
        helper.make_node("Reshape", ["proj", "heads"], ["split"]),
        helper.make_node("Transpose", ["split"], ["bhsd"], perm=[0, 2, 1, 3]),
        helper.make_node("Unsqueeze", ["bhsd", "ax01"], ["one"]),
        helper.make_node("Tile", ["one", "reps"], ["cross_kv"]),
    ]
    inits = [_init("wc", w.wc), _init("heads", np.array([0, 0, w.heads, w.head_dim], np.int64)),
             _init("ax01", np.array([0, 1], np.int64)), _init("reps", np.array([w.layers, 2, 1, 1, 1, 1], np.int64))]
    return _model(nodes, [helper.make_tensor_value_info("encoder_states", F, ["B", "S", w.dim])],
                  [helper.make_tensor_value_info("cross_kv", F, [w.layers, 2, "B", w.heads, "S", w.head_dim])],
                  inits, path)


def step_graph(w: Weights, path: str, slots: Optional[int] = None) -> str:
    """decoder_step taking one token per call (T = 1, as static TPU variants); `slots` fixes L
    statically (None: dynamic). Only layer 0's cross keys are used."""
    n = helper.make_node
    nodes = [
        n("Gather", ["e", "input_ids"], ["emb"]),                       # [B,1,D]
        n("Reshape", ["emb", "bhd"], ["tok"]),                          # [B,H,dh]
        n("Unsqueeze", ["tok", "ax014"], ["new_kv"]),                   # [1,1,B,H,1,dh]
        n("Shape", ["self_kv"], ["kv_shape"]),
        n("Gather", ["kv_shape", "four"], ["L"]),
        n("Range", ["zero", "L", "one"], ["slots"]),                    # [L]
        n("Equal", ["slots", "position"], ["is_p"]),
        n("Cast", ["is_p"], ["hot"], to=F),
        n("Reshape", ["hot", "slot6"], ["hot6"]),
        n("Sub", ["onef", "hot6"], ["keep6"]),
        n("Mul", ["self_kv", "keep6"], ["kept"]),
        n("Mul", ["new_kv", "hot6"], ["put"]),
        n("Add", ["kept", "put"], ["self_kv_out"]),
        n("LessOrEqual", ["slots", "position"], ["seen"]),
        n("Cast", ["seen"], ["seenf"], to=F),
        n("Cast", ["slots"], ["slotsf"], to=F),
        n("Add", ["slotsf", "onef"], ["rank"]),
        n("Mul", ["seenf", "rank"], ["wslot"]),
        n("Reshape", ["wslot", "slot4"], ["w4"]),                       # [1,1,L,1]
        n("Gather", ["self_kv_out", "zero"], ["kv_l0"], axis=0),
        n("Gather", ["kv_l0", "zero"], ["k0"], axis=0),                 # [B,H,L,dh]
        n("Mul", ["k0", "w4"], ["kw"]),
        n("ReduceSum", ["kw", "ax2"], ["h"], keepdims=0),               # [B,H,dh]
        n("Unsqueeze", ["cross_mask", "ax13"], ["m4"]),                 # [B,1,S,1]
        n("Mul", ["cross_key_0", "m4"], ["cm"]),                        # cross_key_0: [B,H,S,dh]
        n("ReduceSum", ["cm", "ax2"], ["c"], keepdims=0),
        n("Add", ["h", "c"], ["hc"]),
        n("Reshape", ["hc", "bd"], ["hidden"]),
        n("MatMul", ["hidden", "wo"], ["logits"]),
    ]
    i64 = lambda name, v: _init(name, np.array(v, np.int64))  # noqa: E731
    inits = [
        _init("e", w.e), _init("wo", w.wo), i64("bhd", [-1, w.heads, w.head_dim]), i64("ax014", [0, 1, 4]),
        i64("four", 4), i64("zero", 0), i64("one", 1), i64("slot6", [1, 1, 1, 1, -1, 1]),
        i64("slot4", [1, 1, -1, 1]), i64("ax2", [2]), i64("ax13", [1, 3]), i64("bd", [-1, w.dim]),
        _init("onef", np.array(1.0, np.float32)),
    ]
    L = slots if slots is not None else "L"
    kv = lambda name, s: helper.make_tensor_value_info(name, F, [w.layers, 2, "B", w.heads, s, w.head_dim])  # noqa
    inputs = [helper.make_tensor_value_info("input_ids", I64, ["B", 1]),
              helper.make_tensor_value_info("position", I64, [1]),
              kv("self_kv", L), helper.make_tensor_value_info("cross_mask", F, ["B", "S"])]
    inputs += [helper.make_tensor_value_info("cross_%s_%d" % (kind, i), F, ["B", w.heads, "S", w.head_dim])
               for i in range(w.layers) for kind in ("key", "value")]
    outputs = [helper.make_tensor_value_info("logits", F, ["B", w.vocab]), kv("self_kv_out", L)]
    return _model(nodes, inputs, outputs, inits, path)


# ---- numpy reference of the same model, written without any cache ----

def ref_vision(w: Weights, pixels: np.ndarray) -> np.ndarray:
    return pixels.reshape(1, 3, -1).transpose(0, 2, 1) @ w.wv


def ref_scores(w: Weights, ids: np.ndarray, mask: np.ndarray, embeds: np.ndarray) -> np.ndarray:
    feat = (w.e2[ids] * mask[..., None]).sum(1)
    return 1 / (1 + np.exp(-(feat * embeds.mean(1)).sum(1)))


def ref_states(w: Weights, ids: np.ndarray, mask: np.ndarray, embeds: np.ndarray) -> np.ndarray:
    return (w.e3[ids] + embeds.mean(1, keepdims=True)) * mask[..., None]


def ref_generate(w: Weights, states: np.ndarray, prefix: Sequence[int], max_length: int, min_length: int,
                 eos: int) -> List[int]:
    """One row, transformers' greedy semantics, recomputing from the whole history every step."""
    cross = (states @ w.wc).sum(0)  # mask is all ones over the given states
    seq = list(prefix)
    while len(seq) < max_length:
        h = sum((j + 1) * w.e[t] for j, t in enumerate(seq))
        logits = (h + cross) @ w.wo
        if len(seq) < min_length:
            logits[eos] = -np.inf
        nxt = int(np.argmax(logits))
        seq.append(nxt)
        if nxt == eos:
            break
    return seq[len(prefix):]


# ---- package writer ----

def sha256(path: str) -> str:
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def write_vocab(folder: str) -> str:
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "vocab.txt"), "w") as fh:
        fh.write("\n".join(VOCAB) + "\n")
    return folder


def make_package(root: str, w: Weights, tasks: Sequence[str] = ("caption", "match", "answer"),
                 settings: Optional[Dict[str, dict]] = None, slots: Optional[int] = None) -> str:
    """Write a package of the toy graphs; the vision file is shared by all tasks."""
    os.makedirs(root, exist_ok=True)
    write_vocab(os.path.join(root, "tokenizer"))
    files = {
        "vision": vision_graph(w, os.path.join(root, "vision.onnx")),
        "text": text_graph(w, os.path.join(root, "text.onnx")),
        "question": question_graph(w, os.path.join(root, "question.onnx")),
        "decoder_init": init_graph(w, os.path.join(root, "decoder_init.onnx")),
        "decoder_step": step_graph(w, os.path.join(root, "decoder_step.onnx"), slots),
    }
    roles = {"caption": ["vision", "decoder_init", "decoder_step"], "match": ["vision", "text"],
             "answer": ["vision", "question", "decoder_init", "decoder_step"]}
    defaults = {
        "caption": {"prompt": "a picture of ", "max_length": 12, "min_length": 5, "eos_token_id": 4,
                    "pad_token_id": 0, "bos_token_id": len(VOCAB)},
        "match": {"max_text_length": 35},
        "answer": {"max_length": 6, "min_length": 1, "max_text_length": 35, "eos_token_id": 4,
                   "pad_token_id": 0, "bos_token_id": len(VOCAB)},
    }
    manifest = {
        "format": 1, "name": "tiny", "tokenizer": "tokenizer",
        "preprocess": {"mean": MEAN, "std": STD, "interpolation": "bicubic"},
        "tasks": {
            t: {"backend": "onnxruntime", "layout": "split", "image_size": w.size,
                "graphs": {r: {"file": os.path.basename(files[r]), "sha256": sha256(files[r])} for r in roles[t]},
                "settings": dict(defaults[t], **(settings or {}).get(t, {}))}
            for t in tasks
        },
        "source": {"made_by": "tests/blip/tiny.py"},
    }
    with open(os.path.join(root, "manifest.yaml"), "w") as fh:
        yaml.safe_dump(manifest, fh, sort_keys=False)
    return root
