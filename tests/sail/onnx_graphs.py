"""Tiny hand-built ONNX graphs with the seed's graph and tensor names, for runtime tests that need
no BLIP export: small, exact arithmetic, so a stale or misplaced input shows in the output."""
from pathlib import Path
from typing import List, Union

import numpy as np

PathLike = Union[str, Path]
OPSET = 13


def _save(nodes: List[object], name: str, inputs: List[object], outputs: List[object], path: PathLike,
          initializers: List[object] = ()) -> Path:  # type: ignore[assignment]
    import onnx
    from onnx import helper

    graph = helper.make_graph(nodes, name, inputs, outputs, initializer=list(initializers))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return Path(path)


def make_itm(path: PathLike, size: int = 4, text: int = 5) -> Path:
    """blip_itm: output [1] = sum(pixel_values) + sum(input_ids * attention_mask)."""
    from onnx import TensorProto, helper

    nodes = [
        helper.make_node("ReduceSum", ["pixel_values"], ["s_pix"], keepdims=0),
        helper.make_node("Mul", ["input_ids", "attention_mask"], ["masked"]),
        helper.make_node("Cast", ["masked"], ["masked_f"], to=TensorProto.FLOAT),
        helper.make_node("ReduceSum", ["masked_f"], ["s_ids"], keepdims=0),
        helper.make_node("Add", ["s_pix", "s_ids"], ["total"]),
        helper.make_node("Reshape", ["total", "one"], ["output"]),
    ]
    inputs = [
        helper.make_tensor_value_info("pixel_values", TensorProto.FLOAT, [1, 3, size, size]),
        helper.make_tensor_value_info("input_ids", TensorProto.INT64, [1, text]),
        helper.make_tensor_value_info("attention_mask", TensorProto.INT64, [1, text]),
    ]
    outputs = [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1])]
    one = helper.make_tensor("one", TensorProto.INT64, [1], [1])
    return _save(nodes, "blip_itm", inputs, outputs, path, [one])


def make_cap(path: PathLike, size: int = 4, tokens: List[int] = (101, 7, 8, 9, 102, 0)) -> Path:  # type: ignore[assignment]
    """blip_cap: int64 tokens [1,N] = `tokens` + floor(mean(pixel_values))."""
    from onnx import TensorProto, helper

    nodes = [
        helper.make_node("ReduceMean", ["pixel_values"], ["mean"], keepdims=0),
        helper.make_node("Floor", ["mean"], ["floor"]),
        helper.make_node("Cast", ["floor"], ["shift"], to=TensorProto.INT64),
        helper.make_node("Add", ["base", "shift"], ["output"]),
    ]
    inputs = [helper.make_tensor_value_info("pixel_values", TensorProto.FLOAT, [1, 3, size, size])]
    outputs = [helper.make_tensor_value_info("output", TensorProto.INT64, [1, len(tokens)])]
    base = helper.make_tensor("base", TensorProto.INT64, [1, len(tokens)], list(tokens))
    return _save(nodes, "blip_cap", inputs, outputs, path, [base])


def make_vision(path: PathLike, size: int = 4) -> Path:
    """A split-layout `vision` graph: image_embeds [1,3,size*size] = pixel_values reshaped * 2."""
    from onnx import TensorProto, helper

    nodes = [
        helper.make_node("Reshape", ["pixel_values", "shape"], ["flat"]),
        helper.make_node("Mul", ["flat", "two"], ["image_embeds"]),
    ]
    inputs = [helper.make_tensor_value_info("pixel_values", TensorProto.FLOAT, [1, 3, size, size])]
    outputs = [helper.make_tensor_value_info("image_embeds", TensorProto.FLOAT, [1, 3, size * size])]
    shape = helper.make_tensor("shape", TensorProto.INT64, [3], [1, 3, size * size])
    two = helper.make_tensor("two", TensorProto.FLOAT, [], [2.0])
    return _save(nodes, "vision", inputs, outputs, path, [shape, two])


def pixels(size: int = 4, value: float = 0.5) -> np.ndarray:
    return np.full((1, 3, size, size), value, dtype=np.float32)
