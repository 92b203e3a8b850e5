"""SOPHON backend: bmodels run through `sophon.sail` (imported only when this backend is chosen).

Facts this module is built around (reference/sophon-sail.md, read against sophon-sail v3.10.7):
- `import_sail` is the one place blipd imports sail (backend, decoder and preflight use it), and
  `sail_build` says which release it is: `sail.__version__` is the build date
  ("master(20240315_101010)", tensor.cpp get_sail_version), never 3.x.y; the release is only in
  the wheel's metadata (distribution `sophon`, `sophon_arm`, `sophon_arm_pcie`... python/setup.py),
  so features decide (`BMImage.asnumpy` from 3.9.1, `Decoder.is_eof` from 3.10.2).
- One `sail.Engine(path, dev_id, IOMode.SYSIO)` per loaded graph: an Engine keeps one set of I/O
  buffers per graph and has no lock, so engines are never shared between worker threads.
  Constructors are positional only; enums must be sail's own members (pybind11 rejects ints).
- The Engine constructor holds the GIL while the bmodel loads (bind.cpp, no gil_scoped_release):
  the daemon loads every engine before its readers and publisher start.
- The numpy `process` raises "bad input" on a wrong rank, shape or name since 3.9.1 (3.9.0 calls
  exit()), but an omitted input silently reuses the previous call's data: `run` checks names and
  shapes itself, so a mistake is a BackendError on every sail version.
- The numpy `Engine.process` holds the GIL for the whole inference (0.2-1 s for BLIP graphs), which
  stalls every reader and the publisher. The default `io="tensor"` uses the `sail.Tensor` form
  (`create_*_tensors_map`, `Tensor.update_data`, `process(g, in, out, core_list)`), which releases
  it; `io="numpy"` is kept as a fallback for sail builds whose Tensor path misbehaves.
- `Tensor.asnumpy` returns the tensor's raw storage: uint16 bits for F16/BF16, int8/uint8 without
  the output scale (tensor.cpp). `run` decodes them to float32 (F16/BF16 bit patterns, int8 times
  `get_output_scale`); the numpy form returns float32 already.
- `core_list` is honoured only on BM1688-class builds; a launch on a core that does not exist only
  logs inside bmrt and stale outputs come back, so `core` is checked against the chip's cores.
- bmodel outputs are named after the compiler's last op, with or without an `_f32` suffix
  (`output_Concat` / `output_Concat_f32`); `outputs` are keyed by the name without `_f32`.
- Ids travel as float32 when the bmodel says F32 (exact below 2^24); token outputs come back as
  float32 and are cast to int64.
- `sail.Sail*Error` subclass Exception, not RuntimeError, and C++ errors arrive as RuntimeError:
  both become one-line BackendErrors. sail 3.9.0 calls exit() on some errors; nothing can catch
  that (daemon/ops/preflight.py warns about it).
"""
import logging
import re
from dataclasses import dataclass
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
SAIL_DISTRIBUTIONS = ("sophon", "sophon_arm", "sophon_arm_pcie", "sophon_loongarch64", "sophon_sw64", "sophon_riscv64")
"""Wheel names of sophon-sail by platform (python/setup.py); their metadata holds the 3.x release."""
CHIP_CORES = {"BM1684": 1, "BM1684X": 1, "BM1688": 2, "CV186AH": 1}
"""TPU cores per chip. BM1688 has two; CV186AH is counted as one until a box shows otherwise."""
MAX_CORES = max(CHIP_CORES.values())

_NUMPY_DTYPES = {
    "BM_FLOAT32": "float32", "BM_INT32": "int32", "BM_INT8": "int8", "BM_UINT8": "uint8",
    "BM_INT16": "int16", "BM_UINT16": "uint16", "BM_UINT32": "uint32", "BM_FLOAT16": "float16",
    "BM_BFLOAT16": "bfloat16",
}
_FEEDABLE = ("float32", "int32", "int8", "uint8")
"""Input dtypes sail's numpy path converts to; F16/BF16 inputs would need their own encoding."""
_SCALED = ("int8", "uint8", "int16", "uint16")
"""Output dtypes whose values sail stores quantised: multiply by the output scale."""


def import_sail(purpose: str = "backend sail") -> Any:
    """`sophon.sail`, or a BackendError saying how to get it (`purpose` starts the message)."""
    try:
        import sophon.sail as sail
    except ImportError as exc:
        raise BackendError(
            "%s: sophon.sail is not importable (%s): install the sophon-sail wheel of the "
            "SOPHON SDK built for this Python (docs/sophon.md)" % (purpose, exc)
        ) from None
    return sail


def _vtuple(text: str) -> Tuple[int, ...]:
    return tuple(int(p) for p in re.findall(r"\d+", text)[:3])


@dataclass(frozen=True)
class SailBuild:
    """What the imported sail is. build: `__version__` (a build date); release: 3.x.y from the
    wheel metadata, None when no sophon wheel is registered (a source build); the has_* fields are
    features read from the module itself, None where the build lacks the class entirely."""

    build: str
    release: Optional[str]
    distribution: Optional[str]
    has_asnumpy: Optional[bool]
    has_is_eof: Optional[bool]

    def _at_least(self, version: str, feature: Optional[bool]) -> Optional[bool]:
        if feature is not None:
            return feature
        if self.release is not None and _vtuple(self.release):
            return _vtuple(self.release) >= _vtuple(version)
        return None

    @property
    def raises_errors(self) -> Optional[bool]:
        """3.9.1+: errors raise (3.9.0 calls exit()). None when nothing tells."""
        return self._at_least("3.9.1", self.has_asnumpy)

    @property
    def exact_eof(self) -> Optional[bool]:
        """3.10.2+: end of file has its own read code and `is_eof()`."""
        return self._at_least("3.10.2", self.has_is_eof)

    def describe(self) -> str:
        """One line: release (or what the features say), build date."""
        if self.release:
            what = "%s (%s)" % (self.release, self.distribution)
        elif self.exact_eof:
            what = ">= 3.10.2 by its features"
        elif self.raises_errors:
            what = "3.9.1-3.9.x by its features"
        elif self.raises_errors is False:
            what = "3.9.0 or older by its features"
        else:
            what = "release unknown"
        return "%s, build %s" % (what, self.build)


def sail_build(sail: Any) -> SailBuild:
    """Identify the imported sail by its wheel metadata and its features (not `__version__`)."""
    release = distribution = None
    try:
        from importlib import metadata
    except ImportError:  # pragma: no cover (3.8 has it)
        metadata = None  # type: ignore[assignment]
    if metadata is not None:
        for name in SAIL_DISTRIBUTIONS:
            try:
                release, distribution = metadata.version(name), name
                break
            except metadata.PackageNotFoundError:
                continue
    image, decoder = getattr(sail, "BMImage", None), getattr(sail, "Decoder", None)
    return SailBuild(
        build=str(getattr(sail, "__version__", "unknown")),
        release=release,
        distribution=distribution,
        has_asnumpy=None if image is None else hasattr(image, "asnumpy"),
        has_is_eof=None if decoder is None else hasattr(decoder, "is_eof"),
    )


def chip_cores(target: str) -> Optional[int]:
    """TPU cores of chip `target` (Handle.get_target()), None for a chip this table lacks."""
    return CHIP_CORES.get(str(target).upper())


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
            on BM1688. A core the chip does not have is a BackendError here: bmrt would only log
            the failed launch and hand back stale outputs.
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
        self.io = io
        self.target = self._target()
        self.core = core
        cores = chip_cores(self.target)
        if core is not None and cores is not None and core >= cores:
            raise BackendError("backend sail: TPU %d is a %s with %d core(s): there is no core %d (model.workers is at most %d here)"
                               % (device, self.target, cores, core, cores))

    def _target(self) -> str:
        """The chip of the device; a bad id raises SailDeviceError in sail ("init device failure")."""
        try:
            return str(self._sail.Handle(self.device).get_target())
        except self._errors as exc:
            raise BackendError("backend sail: TPU %d cannot be opened: %s (bm-smi lists the devices)"
                               % (self.device, one_line(exc))) from None

    def load(self, path: str, graph_name: Optional[str] = None) -> Graph:
        """One new Engine for `path`; `graph_name` is required only when the bmodel has several.
        Holds the GIL while sail loads the file: load before other threads have work to do."""
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
        self._raw: Dict[str, Tuple[str, float]] = {}  # key -> (sail dtype, output scale)
        tokens = g in TOKEN_OUTPUT_GRAPHS
        for name in engine.get_output_names(g):
            key = name[: -len(F32_SUFFIX)] if name.endswith(F32_SUFFIX) else name
            if key in self._engine_names:
                key = name  # both variants present: keep the engine's names
            raw = _dtype_name(engine.get_output_dtype(g, name))
            scale = self._scale(engine, name) if raw in _SCALED else 1.0
            if tokens or raw in ("int32", "uint32") or (raw in _SCALED and scale == 1.0):
                dtype = "int64"
            else:
                dtype = "float32"  # float16/bfloat16 bits and scaled integers are decoded in run
            self._engine_names[key] = name
            self._raw[key] = (raw, scale)
            self.outputs[key] = TensorSpec(key, tuple(int(d) for d in engine.get_output_shape(g, name)), dtype)

    def _scale(self, engine: Any, name: str) -> float:
        get = getattr(engine, "get_output_scale", None)
        scale = float(get(self.name, name)) if get is not None else 1.0
        if not np.isfinite(scale) or scale <= 0:
            raise BackendError("%s: output %s has scale %r" % (self.path, name, scale))
        return scale

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
            if self.io == "tensor":
                value = decode_output(value, *self._raw[key])
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


def decode_output(value: np.ndarray, raw: str, scale: float) -> np.ndarray:
    """What `Tensor.asnumpy` returned, as numbers: F16/BF16 arrive as their uint16 bit patterns,
    quantised integers without their scale (tensor.cpp asnumpy)."""
    if raw == "float16":
        return value.view(np.float16).astype(np.float32) if value.dtype == np.uint16 else value.astype(np.float32)
    if raw == "bfloat16":
        if value.dtype != np.uint16:
            return value.astype(np.float32)
        return (value.astype(np.uint32) << np.uint32(16)).view(np.float32)
    if raw in _SCALED and scale != 1.0:
        return value.astype(np.float32) * np.float32(scale)
    return value
