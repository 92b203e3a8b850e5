"""SOPHON backend: bmodels run through `sophon.sail` (imported only when this backend is chosen).

Facts this module is built around (reference/sophon-sail.md):
- One `sail.Engine(path, dev_id, IOMode.SYSIO)` per loaded graph: an Engine keeps one set of I/O
  buffers per graph and has no lock, so engines are never shared between worker threads.
  Constructors are positional only.
- sail validates little: a wrong input shape is only logged and inference runs anyway, an omitted
  input silently reuses the previous call's data. `run` therefore checks names and shapes itself.
- The numpy `Engine.process` holds the GIL for the whole inference (0.2-1 s for BLIP graphs), which
  stalls every reader and the publisher. The default `io="tensor"` uses the `sail.Tensor` form
  (`create_*_tensors_map`, `Tensor.update_data`, `process(g, in, out, core_list)`), which releases
  it; `io="numpy"` is kept as a fallback for sail builds whose Tensor path misbehaves.
- bmodel outputs are named after the compiler's last op, with or without an `_f32` suffix
  (`output_Concat` / `output_Concat_f32`); `outputs` are keyed by the name without `_f32`.
- Ids travel as float32 when the bmodel says F32 (exact below 2^24); token outputs come back as
  float32 and are cast to int64.
- `sail.Sail*Error` subclass Exception, not RuntimeError, and C++ errors arrive as RuntimeError:
  both become one-line BackendErrors. sail 3.9.0 calls exit() on some errors; nothing can catch
  that (daemon/ops/preflight.py warns about 3.9.0).
"""
import logging
from typing import Any, Dict, List, Mapping, Optional, Tuple

import numpy as np

from blip.errors import BackendError
from blip.runtime.base import Graph, Runtime, TensorSpec

log = logging.getLogger(__name__)

IO_MODES = ("tensor", "numpy")
F32_SUFFIX = "_f32"
FLOAT32_EXACT = 1 << 24
TOKEN_OUTPUT_GRAPHS = frozenset({"blip_cap", "blip_vqa_tdec"})
"""Seed graphs whose output is token ids (reference/seed-blip.md §2): returned as int64."""

_NUMPY_DTYPES = {
    "BM_FLOAT32": "float32", "BM_INT32": "int32", "BM_INT8": "int8", "BM_UINT8": "uint8",
    "BM_INT16": "int16", "BM_UINT16": "uint16", "BM_UINT32": "uint32", "BM_FLOAT16": "float16",
    "BM_BFLOAT16": "bfloat16",
}
_FEEDABLE = ("float32", "int32", "int8", "uint8")
"""Input dtypes sail's numpy path converts to; F16/BF16 inputs would need their own encoding."""


def import_sail() -> Any:
    """`sophon.sail`, or a BackendError saying how to get it."""
    try:
        import sophon.sail as sail
    except ImportError as exc:
        raise BackendError(
            "backend sail: sophon.sail is not importable (%s): install the sophon-sail wheel of the "
            "SOPHON SDK built for this Python (docs/sophon.md)" % exc
        ) from None
    return sail


def sail_errors(sail: Any) -> Tuple[type, ...]:
    """RuntimeError plus every `sail.Sail*Error` class this sail build has."""
    found: List[type] = [RuntimeError]
    for name in dir(sail):
        cls = getattr(sail, name, None)
        if name.startswith("Sail") and name.endswith("Error") and isinstance(cls, type) and issubclass(cls, BaseException):
            found.append(cls)
    return tuple(found)


def one_line(exc: BaseException) -> str:
    """`Type: first line of the message`."""
    text = str(exc).strip().splitlines()
    return "%s: %s" % (type(exc).__name__, text[0]) if text else type(exc).__name__


def _dtype_name(dtype: Any) -> str:
    name = getattr(dtype, "name", str(dtype)).split(".")[-1]
    return _NUMPY_DTYPES.get(name, name.lower())


class SailRuntime(Runtime):
    """Loads bmodels on one TPU device.

    device: TPU id (`bm-smi` lists them).
    core:   None runs each graph on the cores it was compiled for (single-core bmodels: core 0);
            an int sends every call to that core (`core_list=[core]`), e.g. 1 for a second worker
            on BM1688/CV186AH. Other chips' sail builds ignore it.
    io:     "tensor" (default; releases the GIL) or "numpy" (holds the GIL for the whole call).
    """

    name = "sail"

    def __init__(self, device: int = 0, core: Optional[int] = None, io: str = "tensor") -> None:
        if io not in IO_MODES:
            raise BackendError("backend sail: io %r is not one of %s" % (io, ", ".join(IO_MODES)))
        if not isinstance(device, int) or device < 0:
            raise BackendError("backend sail: device must be a TPU id >= 0, got %r" % (device,))
        if core is not None and (not isinstance(core, int) or core < 0):
            raise BackendError("backend sail: core must be None or a core id >= 0, got %r" % (core,))
        self._sail = import_sail()
        self._errors = sail_errors(self._sail)
        self.device = device
        self.core = core
        self.io = io

    def load(self, path: str, graph_name: Optional[str] = None) -> Graph:
        """One new Engine for `path`; `graph_name` is required only when the bmodel has several."""
        return SailGraph(self._sail, self._errors, path, graph_name, self.device, self.core, self.io)


class SailGraph(Graph):
    """One graph of one Engine. Not thread-safe (sail's buffers have no lock): one per worker."""

    def __init__(self, sail: Any, errors: Tuple[type, ...], path: str, graph_name: Optional[str],
                 device: int, core: Optional[int], io: str) -> None:
        self.path = path
        self.io = io
        self._errors = errors
        self._core_list: List[int] = [] if core is None else [core]
        try:
            engine = sail.Engine(path, device, sail.IOMode.SYSIO)
            self.name = self._pick_graph(list(engine.get_graph_names()), graph_name)
            self._describe(engine)
            self._in_map: Dict[str, Any] = {}
            self._out_map: Dict[str, Any] = {}
            if io == "tensor":
                self._in_map = dict(engine.create_input_tensors_map(self.name))
                self._out_map = dict(engine.create_output_tensors_map(self.name))
        except errors as exc:
            raise BackendError("%s: sail cannot load the bmodel on device %d: %s" % (path, device, one_line(exc))) from None
        self._engine: Any = engine
        log.debug("loaded %s graph %s on device %d (io %s, core_list %s)", path, self.name, device, io, self._core_list)

    def _pick_graph(self, names: List[str], wanted: Optional[str]) -> str:
        if wanted is not None:
            if wanted not in names:
                raise BackendError("%s: bmodel has no graph %r (it has: %s)" % (self.path, wanted, ", ".join(names)))
            return wanted
        if len(names) != 1:
            raise BackendError("%s: bmodel has graphs %s: name the one to run" % (self.path, ", ".join(names)))
        return names[0]

    def _describe(self, engine: Any) -> None:
        """Read names, shapes and dtypes from the engine; refuse what `run` cannot feed."""
        g = self.name
        is_dynamic = getattr(engine, "graph_is_dynamic", None)
        if is_dynamic is not None and is_dynamic(g):
            raise BackendError("%s: graph %s is dynamic; compile it with static shapes (blip/export/compile_bmodel.sh)" % (self.path, g))
        self.inputs: Dict[str, TensorSpec] = {}
        for name in engine.get_input_names(g):
            dtype = _dtype_name(engine.get_input_dtype(g, name))
            if dtype not in _FEEDABLE:
                raise BackendError("%s: input %s has dtype %s, which sail cannot be fed from numpy" % (self.path, name, dtype))
            self.inputs[name] = TensorSpec(name, tuple(int(d) for d in engine.get_input_shape(g, name)), dtype)
        self.outputs: Dict[str, TensorSpec] = {}
        self._engine_names: Dict[str, str] = {}  # key of `outputs` -> the engine's output name
        tokens = g in TOKEN_OUTPUT_GRAPHS
        for name in engine.get_output_names(g):
            key = name[: -len(F32_SUFFIX)] if name.endswith(F32_SUFFIX) else name
            if key in self._engine_names:
                key = name  # both variants present: keep the engine's names
            dtype = _dtype_name(engine.get_output_dtype(g, name))
            if tokens or dtype.startswith(("int", "uint")):
                dtype = "int64"
            self._engine_names[key] = name
            self.outputs[key] = TensorSpec(key, tuple(int(d) for d in engine.get_output_shape(g, name)), dtype)

    def run(self, feeds: Mapping[str, np.ndarray]) -> Dict[str, np.ndarray]:
        """Validate and convert the feeds, run once, return every output under its `outputs` key."""
        if self._engine is None:
            raise BackendError("%s: graph is closed" % self.path)
        arrays = {name: self._convert(name, value) for name, value in feeds.items()}
        missing = [n for n in self.inputs if n not in arrays]
        if missing:
            raise BackendError("%s: graph %s: input(s) %s not given (sail would silently reuse the previous call's data)"
                               % (self.path, self.name, ", ".join(missing)))
        try:
            raw = self._run_tensors(arrays) if self.io == "tensor" else self._run_numpy(arrays)
        except self._errors as exc:
            raise BackendError("%s: graph %s failed: %s" % (self.path, self.name, one_line(exc))) from None
        out: Dict[str, np.ndarray] = {}
        for key, spec in self.outputs.items():
            value = np.asarray(raw[self._engine_names[key]])
            out[key] = np.rint(value).astype(np.int64) if spec.dtype == "int64" else value.astype(np.float32, copy=False)
        return out

    def _convert(self, name: str, value: Any) -> np.ndarray:
        """The array in the bmodel tensor's dtype, after the checks sail does not make."""
        spec = self.inputs.get(name)
        if spec is None:
            raise BackendError("%s: graph %s has no input %r (inputs: %s)" % (self.path, self.name, name, ", ".join(self.inputs)))
        arr = np.asarray(value)
        if tuple(arr.shape) != spec.shape:
            raise BackendError("%s: graph %s: input %s has shape %s, the bmodel needs %s"
                               % (self.path, self.name, name, tuple(arr.shape), spec.shape))
        if arr.dtype.kind in "iub":
            limit = FLOAT32_EXACT if spec.dtype == "float32" else int(np.iinfo(np.dtype(spec.dtype)).max)
            if arr.size and int(np.abs(arr.astype(np.int64)).max()) >= limit:
                raise BackendError("%s: graph %s: input %s holds values of %d or more, which %s cannot carry exactly"
                                   % (self.path, self.name, name, limit, spec.dtype))
        elif spec.dtype != "float32":
            raise BackendError("%s: graph %s: input %s is %s, the bmodel takes integers (%s)"
                               % (self.path, self.name, name, arr.dtype, spec.dtype))
        return np.ascontiguousarray(arr, dtype=np.dtype(spec.dtype))

    def _run_tensors(self, arrays: Mapping[str, np.ndarray]) -> Dict[str, np.ndarray]:
        for name, arr in arrays.items():
            self._in_map[name].update_data(arr)
        self._engine.process(self.name, self._in_map, self._out_map, self._core_list)
        return {name: tensor.asnumpy() for name, tensor in self._out_map.items()}

    def _run_numpy(self, arrays: Mapping[str, np.ndarray]) -> Dict[str, np.ndarray]:
        # sail casts every numpy input to float32 first, then to the tensor's dtype
        feeds = {name: np.ascontiguousarray(arr, dtype=np.float32) for name, arr in arrays.items()}
        return dict(self._engine.process(self.name, feeds, self._core_list))

    def close(self) -> None:
        """Drop the engine and its buffers now."""
        self._engine = None
        self._in_map = {}
        self._out_map = {}
