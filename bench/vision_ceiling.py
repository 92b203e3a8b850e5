"""How close an ONNX vision encoder runs to the machine's own fp32 ceiling.

FLOPs are counted from the graph (its GEMM shapes read from one run): 2*M*K*N for
every MatMul and Gemm, the multiply-adds of every Conv, the two products of a fused
MultiHeadAttention (4*B*S*L*D, as its MatMuls would count); elementwise work is left out, so the
figure is the work a perfect GEMM kernel would do. The ceiling is a large fp32 MatMul (2048^3) run
by ONNX Runtime (MLAS) with the same thread count and session options, and by numpy's BLAS, timed
in turn with the vision graph; the higher of the two is the practical ceiling. `weight_gemms_runner`
runs the graph's own weight GEMMs alone (same shapes, one graph): the limit the graph itself could
reach. `op_profile` says where the time goes (ONNX Runtime's profiler, by op type).
"""
import json
import os
import statistics
import tempfile
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

CEILING_N = 2048


def _gemm_shapes(path: str, feeds: Mapping[str, np.ndarray]) -> Tuple[List[Any], Dict[str, List[int]], Sequence[str]]:
    """The graph's MatMul, Gemm, Conv and MultiHeadAttention nodes, the shape of every tensor they
    read or write, and the graph's weight names. Shapes come from one run of the graph itself
    (unoptimised, every such tensor exposed): no shape inference through its Reshape arithmetic."""
    import onnx
    import onnxruntime as ort

    model = onnx.load(path)
    weights = {init.name: list(init.dims) for init in model.graph.initializer}
    gemms = [n for n in model.graph.node if n.op_type in ("MatMul", "Gemm", "Conv", "MultiHeadAttention")]
    wanted = sorted({t for n in gemms for t in (n.input[0], n.input[1], n.output[0])} - set(weights)
                    - {o.name for o in model.graph.output})
    model.graph.output.extend(onnx.ValueInfoProto(name=name) for name in wanted)
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    shapes = {name: list(v.shape) for name, v in zip(names, session.run(None, dict(feeds)))}
    shapes.update(weights)
    return gemms, shapes, list(weights)


def graph_flops(path: str, feeds: Mapping[str, np.ndarray]) -> float:
    """Multiply-add FLOPs of the MatMul, Gemm, Conv and MultiHeadAttention nodes in one run on `feeds`."""
    gemms, shapes, _ = _gemm_shapes(path, feeds)
    total = 0.0
    for node in gemms:
        out = shapes[node.output[0]]
        if node.op_type == "MultiHeadAttention":  # q [B,S,D] k [B,L,D]: Q.K^T and P.V
            total += 4.0 * float(np.prod(shapes[node.input[0]])) * shapes[node.input[1]][1]
            continue
        if node.op_type == "Conv":
            total += 2.0 * float(np.prod(out)) * float(np.prod(shapes[node.input[1]][1:]))
            continue
        a = shapes[node.input[0]]
        trans_a = any(att.name == "transA" and att.i for att in node.attribute)
        total += 2.0 * float(np.prod(out)) * (a[-2] if trans_a else a[-1])
    return total


def weight_gemms_runner(path: str, feeds: Mapping[str, np.ndarray], threads: Optional[int]) -> Tuple[float, Callable[[], Any]]:
    """(FLOPs, call) of one ONNX graph holding only the vision graph's weight MatMuls/Gemms, same
    shapes, each with its own random weights: what the graph's GEMMs cost with nothing between them,
    the graph's own practical limit (its weights stream from memory just the same)."""
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    from blip.runtime.onnxruntime import OrtRuntime

    gemms, shapes, weight_names = _gemm_shapes(path, feeds)
    rng = np.random.default_rng(0)
    inputs: Dict[Tuple[int, int], str] = {}
    nodes, weights, outputs, flops = [], [], [], 0.0
    for i, node in enumerate(n for n in gemms if n.op_type in ("MatMul", "Gemm")):
        a, w = shapes[node.input[0]], shapes[node.input[1]]
        trans_a = any(att.name == "transA" and att.i for att in node.attribute)
        if node.input[1] not in weight_names or len(w) != 2 or trans_a:
            continue  # attention's activation products and anything unusual: not a weight GEMM
        trans_b = any(att.name == "transB" and att.i for att in node.attribute)
        k, n = (w[1], w[0]) if trans_b else (w[0], w[1])
        m = int(np.prod(a[:-1]))
        x = inputs.setdefault((m, k), "x%d_%d" % (m, k))
        weights.append(numpy_helper.from_array(rng.random((k, n), dtype=np.float32) - 0.5, "w%d" % i))
        nodes.append(helper.make_node("MatMul", [x, "w%d" % i], ["y%d" % i]))
        outputs.append("y%d" % i)
        flops += 2.0 * m * k * n
    graph = helper.make_graph(
        nodes, "gemms", [helper.make_tensor_value_info(name, TensorProto.FLOAT, list(mk)) for mk, name in inputs.items()],
        [helper.make_tensor_value_info(name, TensorProto.FLOAT, None) for name in outputs], weights)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    options = OrtRuntime(device=None, threads=threads).session_options()
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    data = {name: rng.random(mk, dtype=np.float32) for mk, name in inputs.items()}
    return flops, lambda: session.run(None, data)


def _ort_matmul(n: int, threads: Optional[int]) -> Any:
    from blip.runtime.onnxruntime import OrtRuntime
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    weight = np.random.default_rng(0).random((n, n), dtype=np.float32)
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "ceiling",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [n, n])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [n, n])],
                              [numpy_helper.from_array(weight, "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    options = OrtRuntime(device=None, threads=threads).session_options()  # blipd's session options
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


def matmul_runners(threads: Optional[int], n: int = CEILING_N) -> Tuple[float, Dict[str, Callable[[], Any]]]:
    """(FLOPs of one call, {"onnxruntime": call, "numpy": call}) of an n^3 fp32 MatMul: timed
    inside the same measuring loop as the vision graph, so load from other processes hits both."""
    session = _ort_matmul(n, threads)
    x = np.random.default_rng(1).random((n, n), dtype=np.float32)
    feeds = {"x": x}
    return 2.0 * n ** 3, {"onnxruntime": lambda: session.run(None, feeds), "numpy": lambda: x @ x}


def op_profile(path: str, feeds: Mapping[str, np.ndarray], threads: Optional[int], runs: int = 3) -> Dict[str, float]:
    """ms per run by op type, from ONNX Runtime's profiler (blipd's session options), largest first."""
    from blip.runtime.onnxruntime import OrtRuntime

    import onnxruntime as ort

    options = OrtRuntime(device=None, threads=threads).session_options()
    options.enable_profiling = True
    options.profile_file_prefix = os.path.join(tempfile.gettempdir(), "blip-vision-profile")
    session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    session.run(None, dict(feeds))
    for _ in range(runs):
        session.run(None, dict(feeds))
    profile = session.end_profiling()
    try:
        with open(profile, encoding="utf-8") as handle:
            events = json.load(handle)
    finally:
        os.unlink(profile)
    by_op: Dict[str, float] = {}
    for event in events:
        if event.get("cat") == "Node" and event.get("name", "").endswith("_kernel_time"):
            op = event["args"].get("op_name", "?")
            by_op[op] = by_op.get(op, 0.0) + event["dur"] / 1000.0 / (runs + 1)
    return dict(sorted(by_op.items(), key=lambda kv: -kv[1]))


def vision_fraction(flops: float, matmul_flops: float, times: Mapping[str, Sequence[float]]) -> Dict[str, float]:
    """GFLOP/s from median times: the fp32 vision graph (`fp32`), the matmul in ONNX Runtime and
    numpy; the ceiling is the faster matmul, the fraction the vision graph's share of it."""
    rate = {name: work / statistics.median(times[name]) / 1e9
            for name, work in (("fp32", flops), ("onnxruntime", matmul_flops), ("numpy", matmul_flops))}
    ceiling = max(rate["onnxruntime"], rate["numpy"])
    return {"vision_gflop": flops / 1e9, "vision_gflops": rate["fp32"], "onnxruntime_gflops": rate["onnxruntime"],
            "numpy_gflops": rate["numpy"], "ceiling_gflops": ceiling, "vision_fraction_of_ceiling": rate["fp32"] / ceiling}
