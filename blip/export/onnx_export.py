"""Trace one torch module into one ONNX graph and check it against PyTorch with ONNX Runtime."""
import logging
import time
import warnings
from collections import OrderedDict
from pathlib import Path
from typing import Dict, List, Mapping, Optional

import numpy as np
import torch

from blip.errors import ExportError
from blip.graphs import SPLIT_IO, cross_names, split_io

log = logging.getLogger(__name__)

OPSET = 17
# max |onnx - torch| allowed, relative to max(1, max |torch|): fp32 kernels differ in summation order
TOLERANCE = 1e-3

# role -> tensor -> {axis: name}. Batch-like axes, text length T, encoder length S, cache slots L.
DYNAMIC_AXES: Dict[str, Dict[str, Dict[int, str]]] = {
    "vision": {},
    "text": {"input_ids": {0: "P", 1: "T"}, "attention_mask": {0: "P", 1: "T"}, "scores": {0: "P"}},
    "question": {
        "input_ids": {0: "Q", 1: "T"},
        "attention_mask": {0: "Q", 1: "T"},
        "question_states": {0: "Q", 1: "T"},
    },
    "decoder_init": {"encoder_states": {0: "B", 1: "S"}, "cross_kv": {2: "B", 4: "S"}},
    "decoder_step": {  # + every cross_key_<i> / cross_value_<i>: {0: "B", 2: "S"}
        "input_ids": {0: "B", 1: "new_tokens"},
        "self_kv": {2: "B", 4: "L"},
        "cross_mask": {0: "B", 1: "S"},
        "logits": {0: "B"},
        "self_kv_out": {2: "B", 4: "L"},
    },
}


def input_names(role: str, feeds: Mapping[str, torch.Tensor]) -> List[str]:
    """The role's graph inputs in order; decoder_step's cross inputs sized by the feeds' self_kv."""
    layers = int(feeds["self_kv"].shape[0]) if role == "decoder_step" else 0
    return list(split_io(role, layers)[0])


def dynamic_axes(role: str, names: List[str]) -> Dict[str, Dict[int, str]]:
    axes = dict(DYNAMIC_AXES[role])
    if role == "decoder_step":
        cross = set(cross_names(len([n for n in names if n.startswith("cross_key_")])))
        axes.update({name: {0: "B", 2: "S"} for name in names if name in cross})
    return axes


def _as_numpy(feeds: Mapping[str, torch.Tensor]) -> Dict[str, np.ndarray]:
    return {name: value.detach().cpu().numpy() for name, value in feeds.items()}


def run_torch(module: torch.nn.Module, role: str, feeds: Mapping[str, torch.Tensor]) -> Dict[str, np.ndarray]:
    """The module's outputs on `feeds`, named as the role's outputs."""
    with torch.no_grad():
        out = module(*[feeds[name] for name in input_names(role, feeds)])
    outputs = out if isinstance(out, tuple) else (out,)
    return {name: t.detach().cpu().numpy() for name, t in zip(SPLIT_IO[role][1], outputs)}


def export_graph(module: torch.nn.Module, role: str, feeds: Mapping[str, torch.Tensor], path: Path) -> None:
    """torch.onnx.export with the role's tensor names and dynamic axes (TorchScript exporter, opset 17)."""
    names = input_names(role, feeds)
    output_names = list(SPLIT_IO[role][1])
    path.parent.mkdir(parents=True, exist_ok=True)
    args = tuple(feeds[name] for name in names)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # tracer warnings about Python values are expected and checked below
        torch.onnx.export(
            module,
            args,
            str(path),
            input_names=names,
            output_names=output_names,
            dynamic_axes=dynamic_axes(role, names),
            opset_version=OPSET,
            do_constant_folding=True,
            dynamo=False,
        )


def ort_session(path: Path, threads: Optional[int] = None):
    """A CPU ONNX Runtime session with full graph optimisation."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    if threads:
        options.intra_op_num_threads = threads
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def max_abs_diff(reference: Mapping[str, np.ndarray], actual: Mapping[str, np.ndarray]) -> Dict[str, float]:
    """Per output: max |actual - reference|; inf where shapes disagree."""
    diffs: Dict[str, float] = OrderedDict()
    for name, ref in reference.items():
        got = actual[name]
        if got.shape != ref.shape:
            diffs[name] = float("inf")
        else:
            diffs[name] = float(np.max(np.abs(got.astype(np.float64) - ref))) if ref.size else 0.0
    return diffs


def verify_graph(
    path: Path, module: torch.nn.Module, role: str, feeds: Mapping[str, torch.Tensor], tolerance: float = TOLERANCE
) -> float:
    """Run the ONNX graph and the module on the same feeds; ExportError if they disagree. Returns max diff."""
    reference = run_torch(module, role, feeds)
    session = ort_session(path)
    names = [o.name for o in session.get_outputs()]
    actual = dict(zip(names, session.run(None, _as_numpy(feeds))))
    worst = 0.0
    for name, diff in max_abs_diff(reference, actual).items():
        scale = max(1.0, float(np.max(np.abs(reference[name]))) if reference[name].size else 1.0)
        if not diff <= tolerance * scale:
            raise ExportError(
                "graph %s: output %s differs from PyTorch by %.3g (allowed %.3g)"
                % (path, name, diff, tolerance * scale)
            )
        worst = max(worst, diff)
    return worst


def export_and_verify(
    module: torch.nn.Module,
    role: str,
    trace_feeds: Mapping[str, torch.Tensor],
    check_feeds: Mapping[str, torch.Tensor],
    path: Path,
    verify: bool = True,
) -> None:
    """Export one graph, verify it, log one line with size, time and max diff.

    The check feeds have other batch/length sizes than the traced ones, so a dimension the tracer
    froze into the graph fails here instead of in the daemon.
    """
    start = time.monotonic()
    module.eval()
    export_graph(module, role, trace_feeds, path)
    diff_text = "not verified"
    if verify:
        diff_text = "max abs diff %.2e" % verify_graph(path, module, role, check_feeds)
    log.info(
        "exported %s/%s (%.1f MB) in %.1f s, %s",
        path.parent.name,
        path.name,
        path.stat().st_size / 1e6,
        time.monotonic() - start,
        diff_text,
    )
