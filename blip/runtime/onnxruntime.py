"""ONNX Runtime backend: one InferenceSession per graph, CUDA when present and asked for, else CPU.

onnxruntime is imported only here, and this module only when the backend is chosen.
"""
import logging
from typing import Any, Dict, List, Mapping, Optional

import numpy as np

from blip.errors import BackendError
from blip.runtime.base import Graph, Runtime, TensorSpec

log = logging.getLogger(__name__)

# ONNX type strings -> numpy dtype names (the types our graphs use, plus a few neighbours).
_DTYPES = {
    "tensor(float)": "float32",
    "tensor(float16)": "float16",
    "tensor(double)": "float64",
    "tensor(int64)": "int64",
    "tensor(int32)": "int32",
    "tensor(int8)": "int8",
    "tensor(uint8)": "uint8",
    "tensor(bool)": "bool",
}


def _import_ort() -> Any:
    try:
        import onnxruntime
    except ImportError as exc:
        raise BackendError(
            "backend onnxruntime is not installed (%s): pip install 'blipd[onnx]'" % exc
        ) from None
    return onnxruntime


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


class OrtGraph(Graph):
    """One InferenceSession. `run` casts feeds to the declared dtypes (no copy when they match)."""

    def __init__(self, path: str, session: Any) -> None:
        self.path = path
        self._session = session
        self.inputs = {i.name: _spec(i) for i in session.get_inputs()}
        self.outputs = {o.name: _spec(o) for o in session.get_outputs()}
        self._output_names: List[str] = list(self.outputs)
        self._dtypes = {name: np.dtype(spec.dtype) for name, spec in self.inputs.items()}

    def run(self, feeds: Mapping[str, np.ndarray]) -> Dict[str, np.ndarray]:
        """Run the session once with every output requested."""
        if self._session is None:
            raise BackendError("%s: graph is closed" % self.path)
        cast: Dict[str, np.ndarray] = {}
        for name, value in feeds.items():
            dtype = self._dtypes.get(name)
            if dtype is None:
                raise BackendError("%s: graph has no input %r (inputs: %s)" % (self.path, name, ", ".join(self.inputs)))
            cast[name] = np.ascontiguousarray(value, dtype=dtype)
        try:
            values = self._session.run(None, cast)
        except Exception as exc:  # onnxruntime raises its own untyped exceptions
            raise BackendError("%s: onnxruntime failed: %s" % (self.path, _one_line(exc))) from None
        return dict(zip(self._output_names, values))

    def close(self) -> None:
        """Drop the session (and its weights) now."""
        self._session = None


def _spec(node: Any) -> TensorSpec:
    shape = tuple(d if isinstance(d, int) and d >= 0 else None for d in (node.shape or ()))
    return TensorSpec(node.name, shape, _DTYPES.get(node.type, "float32"))


class OrtRuntime(Runtime):
    """Creates ONNX Runtime sessions with one set of options.

    device:  CUDA device id; None forces the CPU. CUDA is used only when the installed onnxruntime
             has the CUDA provider.
    threads: intra-op threads per session (None: onnxruntime's default, one per core).
    options: `optimization` ("all" default, "extended", "basic", "disable"), `providers` (an
             explicit onnxruntime provider list), `log_level` (onnxruntime severity, default 3),
             `spinning` (default False: intra-op threads sleep while waiting for work instead of
             spinning. Measured on 2 cores with BLIP-base-sized graphs: +7 to +15 % frames/s
             alone and +9 % beside three decoding 720p streams; spinning burns the core a
             decoder or the other intra-op thread needs).
    """

    name = "onnxruntime"

    def __init__(self, device: Optional[int] = 0, threads: Optional[int] = None, **options: Any) -> None:
        self._ort = _import_ort()
        unknown = set(options) - {"optimization", "providers", "log_level", "spinning"}
        if unknown:
            raise BackendError("backend onnxruntime: unknown option(s) %s" % ", ".join(sorted(unknown)))
        if threads is not None and threads < 0:
            raise BackendError("backend onnxruntime: threads must be >= 0, got %d" % threads)
        self.device = device
        self.threads = threads
        self._level = self._opt_level(options.get("optimization", "all"))
        self._log_level = int(options.get("log_level", 3))
        self._spinning = bool(options.get("spinning", False))
        self.providers = options.get("providers") or self._default_providers(device)

    def _opt_level(self, name: str) -> Any:
        levels = self._ort.GraphOptimizationLevel
        table = {
            "all": levels.ORT_ENABLE_ALL,
            "extended": levels.ORT_ENABLE_EXTENDED,
            "basic": levels.ORT_ENABLE_BASIC,
            "disable": levels.ORT_DISABLE_ALL,
        }
        if name not in table:
            raise BackendError("backend onnxruntime: optimization %r is not one of %s" % (name, ", ".join(table)))
        return table[name]

    def _default_providers(self, device: Optional[int]) -> List[Any]:
        available = self._ort.get_available_providers()
        if device is not None and "CUDAExecutionProvider" in available:
            return [("CUDAExecutionProvider", {"device_id": int(device)}), "CPUExecutionProvider"]
        return ["CPUExecutionProvider"]

    def session_options(self) -> Any:
        """The SessionOptions every session of this runtime gets."""
        options = self._ort.SessionOptions()
        options.graph_optimization_level = self._level
        options.log_severity_level = self._log_level
        if self.threads:
            options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        options.add_session_config_entry("session.intra_op.allow_spinning", "1" if self._spinning else "0")
        return options

    def load(self, path: str, graph_name: Optional[str] = None) -> Graph:
        """Create a session for `path` (`graph_name` is for multi-graph files and unused here)."""
        options = self.session_options()
        try:
            session = self._ort.InferenceSession(path, sess_options=options, providers=self.providers)
        except Exception as exc:  # NoSuchFile, InvalidProtobuf, Fail...: all one line for the user
            raise BackendError("%s: onnxruntime cannot load the graph: %s" % (path, _one_line(exc))) from None
        log.debug("loaded %s with providers %s", path, session.get_providers())
        return OrtGraph(path, session)
