"""A faithful test double of `sophon.sail` (reference/sophon-sail.md §9), for machines without a TPU.

Data really flows: a "bmodel" is an ONNX file run by onnxruntime, and `Decoder` decodes files and
RTSP through cv2.VideoCapture. What the double mirrors from sail 3.9.0-3.10.7:

- constructors bound without py::arg are positional only (keywords raise TypeError);
- `SailEngineError`, `SailDecoderError`, `SailTensorError`... subclass Exception, not RuntimeError;
  `Decoder` open failures are RuntimeError; profile 3.9.0 "calls exit()" (SystemExit) on a bad
  bmodel or a wrong IOMode;
- `__version__` is the build date ("master(YYYYMMDD_HHMMSS)"), never the release; features follow
  the release: `BMImage.asnumpy` from 3.9.1, `Decoder.is_eof` from 3.10.2 (absent before);
- pybind11 enums: a plain int where sail takes an IOMode, Dtype, Format, ImgDtype or resize
  algorithm is a TypeError; `Handle(bad id)` raises SailDeviceError("init device failure");
- `Engine(...)` holds the GIL while it loads (`load_s`);
- numpy `Engine.process`: inputs force-cast to float32 then to the tensor dtype, outputs float32
  copies; SYSO/DEVIO -> "bad input"; unknown input name or a wrong shape -> SailEngineError("bad
  input") (3.9.0: exit); a missing input keeps the previous call's data (strict profile: raises);
  the numpy form holds the GIL for the whole inference (`infer_s`), the Tensor form releases it;
- Tensor form: `Tensor(handle, shape, dtype)` owns neither host nor device memory unless asked;
  an input or output tensor without host memory (SYSIO) is "bad input" / "bad output";
  `Tensor.asnumpy` gives the raw storage (uint16 bits for F16/BF16, unscaled int8);
- `core_list` beyond the chip's cores (BM1688: 2): the launch fails, is only logged, and the
  previous outputs come back;
- output names: the seed graphs' single output gets its bmodel name (`output_Concat`...), every
  output gets `_f32` appended when the profile selects that variant;
- `Decoder`: read timeouts (`rtsp_transport`, `stimeout`) only for URLs starting with lowercase
  `rtsp:`; prints `decoder ctor: filepath=<url>` and `open filepath=<url>` to the C-level stdout
  (credentials included) on open and on every reopen; read return codes per version; `is_eof`
  only from 3.10.2; the reopen after 20 consecutive failed reads (EOF counts before 3.10.2);
- `Bmcv.resize`/`vpp_resize` refuse BICUBIC on a BM1684X profile; `convert_to` computes a*x+b per
  plane in float32 (the pairs are C++ floats), and on BM1688/CV186AH (not in bmcv's list) prints an
  error, returns success and leaves uninitialised memory in the output; `bm_image_to_tensor` gives a device-only Tensor
  (no system memory: a SYSI/SYSIO Tensor-form `process` refuses it as "bad input").

The profile (version, chip, ...) comes from FAKE_SAIL_* environment variables read at import, or
from `_configure(...)`; underscore names are the double's own controls, not sail API.

Sidecar `<bmodel>.json` (optional): {"graph": name, "shapes": {input: [dims]}, "dynamic": bool,
"chip": "BM1684X", "output_dtypes": {output: "BM_FLOAT16"}, "output_scales": {output: 0.05}}. Without it the graph name is the ONNX graph's name.
"""
import json
import os
import re
import time
from enum import IntEnum
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

# ---------------------------------------------------------------------------------------------
# profile


class _Profile:
    """What kind of box and sail build the double pretends to be."""

    def __init__(self) -> None:
        env = os.environ.get
        self.version = env("FAKE_SAIL_VERSION", "3.10.7")
        self.chip = env("FAKE_SAIL_CHIP", "BM1684X")
        self.devices = int(env("FAKE_SAIL_DEVICES", "1"))
        self.f32_names = env("FAKE_SAIL_F32_NAMES", "0") == "1"
        self.ids_dtype = env("FAKE_SAIL_IDS_DTYPE", "F32")  # F32 | INT32: dtype of int64 ONNX tensors
        self.strict = env("FAKE_SAIL_STRICT", "0") == "1"
        self.infer_s = float(env("FAKE_SAIL_INFER_S", "0"))  # extra time per process() call
        self.load_s = float(env("FAKE_SAIL_LOAD_S", "0"))  # extra time per Engine(), GIL held
        self.rtsp_drop = env("FAKE_SAIL_RTSP_DROP", "eof")  # eof | error: how a dead RTSP read ends
        self.dev_mem = tuple(int(v) for v in env("FAKE_SAIL_DEV_MEM", "7615,120").split(","))
        self.log: List[str] = []  # what the real sail would only have logged
        self.opens: List[Tuple[str, Dict[str, str]]] = []  # Decoder constructions: (path, options)

    def at_least(self, version: str) -> bool:
        return _vtuple(self.version) >= _vtuple(version)


def _vtuple(text: str) -> Tuple[int, ...]:
    return tuple(int(p) for p in re.findall(r"\d+", text)[:3])


_BUILD_DATES = {"3.9.0": "20240712_093011", "3.9.1": "20241108_151502", "3.9.4": "20250314_101010",
                "3.10.2": "20250418_164233", "3.10.7": "20251106_112947"}


def _build_string(version: str) -> str:
    """`sail.__version__` as every release 3.9.0-3.10.7 sets it: the build date (tensor.cpp)."""
    return "master(%s)" % _BUILD_DATES.get(version, "20250101_000000")


_profile = _Profile()
__version__ = _build_string(_profile.version)


def _configure(**changes: Any) -> None:
    """Change the profile (version, chip, f32_names, ids_dtype, strict, infer_s, rtsp_drop...)."""
    global __version__
    for key, value in changes.items():
        if not hasattr(_profile, key):
            raise AttributeError("fake sail profile has no %r" % key)
        setattr(_profile, key, value)
    __version__ = _build_string(_profile.version)
    _apply_features()


def _reset() -> None:
    """Back to the profile of the environment."""
    global _profile, __version__
    _profile = _Profile()
    __version__ = _build_string(_profile.version)
    _apply_features()


def _opens() -> List[Tuple[str, Dict[str, str]]]:
    """Every Decoder construction so far: (path as given, the options it read)."""
    return list(_profile.opens)


def _logged() -> List[str]:
    """Messages the real sail would only have logged (silent failures), oldest first."""
    return list(_profile.log)


def _stdout(text: str) -> None:
    """Write to fd 1 the way C++ std::cout/spdlog do (under Python's sys.stdout)."""
    os.write(1, (text + "\n").encode("utf-8", "replace"))


def _log(text: str) -> None:
    _profile.log.append(text)
    _stdout("[sail] [error] " + text)


def _positional(cls: str, kwargs: Dict[str, Any]) -> None:
    if kwargs:
        raise TypeError(
            "__init__(): incompatible constructor arguments. The following argument types are supported: "
            "(%s positional arguments only); invoked with keywords %s" % (cls, ", ".join(sorted(kwargs)))
        )


def _enum(cls: Any, value: Any, what: str) -> Any:
    """pybind11 enums do not convert from int: only sail's own members are accepted."""
    if not isinstance(value, cls):
        raise TypeError("%s(): incompatible function arguments: expected sophon.sail.%s, got %s"
                        % (what, cls.__name__, type(value).__name__))
    return value


def _exit_like_390(message: str) -> None:
    """sail 3.9.0 calls exit() on many errors: the process dies instead of raising."""
    if not _profile.at_least("3.9.1"):
        _stdout("[sail] [error] %s, exit" % message)
        raise SystemExit(1)


# ---------------------------------------------------------------------------------------------
# enums and errors


class IOMode(IntEnum):
    SYSI = 0
    SYSO = 1
    SYSIO = 2
    DEVIO = 3


class Dtype(IntEnum):
    BM_FLOAT32 = 0
    BM_FLOAT16 = 1
    BM_INT8 = 2
    BM_UINT8 = 3
    BM_INT16 = 4
    BM_UINT16 = 5
    BM_INT32 = 6
    BM_UINT32 = 7
    BM_BFLOAT16 = 8


class Format(IntEnum):
    FORMAT_YUV420P = 0
    FORMAT_YUV422P = 1
    FORMAT_YUV444P = 2
    FORMAT_NV12 = 3
    FORMAT_NV21 = 4
    FORMAT_NV16 = 5
    FORMAT_NV61 = 6
    FORMAT_NV24 = 7
    FORMAT_RGB_PLANAR = 8
    FORMAT_BGR_PLANAR = 9
    FORMAT_RGB_PACKED = 10
    FORMAT_BGR_PACKED = 11
    FORMAT_RGBP_SEPARATE = 12
    FORMAT_BGRP_SEPARATE = 13
    FORMAT_GRAY = 14
    FORMAT_COMPRESSED = 15


class ImgDtype(IntEnum):
    DATA_TYPE_EXT_FLOAT32 = 0
    DATA_TYPE_EXT_1N_BYTE = 1
    DATA_TYPE_EXT_1N_BYTE_SIGNED = 2


class bmcv_resize_algorithm(IntEnum):  # noqa: N801 (sail's name)
    BMCV_INTER_NEAREST = 0
    BMCV_INTER_LINEAR = 1
    BMCV_INTER_BICUBIC = 2


class DecoderStatus(IntEnum):
    NONE = 0
    OPENED = 1
    CLOSED = 2
    STATUS_MAX = 3


class SailEngineError(Exception):
    pass


class SailDecoderError(Exception):
    pass


class SailTensorError(Exception):
    pass


class SailBMImageError(Exception):
    pass


class SailDeviceError(Exception):
    pass


_NP_DTYPES = {
    Dtype.BM_FLOAT32: np.float32, Dtype.BM_INT8: np.int8, Dtype.BM_UINT8: np.uint8, Dtype.BM_INT32: np.int32,
    Dtype.BM_UINT32: np.uint32, Dtype.BM_INT16: np.int16, Dtype.BM_UINT16: np.uint16,
}


def _storage(dtype: Dtype) -> Any:
    """The numpy type sail stores (and `asnumpy` returns) a dtype as: F16/BF16 as uint16 bits."""
    if dtype in (Dtype.BM_FLOAT16, Dtype.BM_BFLOAT16):
        return np.uint16
    return _NP_DTYPES[dtype]


def _to_storage(values: np.ndarray, dtype: Dtype, scale: float = 1.0) -> np.ndarray:
    """Float results as the device holds them: F16/BF16 bit patterns, int8 quantised by `scale`."""
    if dtype == Dtype.BM_FLOAT16:
        return np.asarray(values, dtype=np.float16).view(np.uint16)
    if dtype == Dtype.BM_BFLOAT16:
        return (np.asarray(values, dtype=np.float32).view(np.uint32) >> np.uint32(16)).astype(np.uint16)
    if dtype in (Dtype.BM_INT8, Dtype.BM_UINT8, Dtype.BM_INT16, Dtype.BM_UINT16) and scale != 1.0:
        info = np.iinfo(_NP_DTYPES[dtype])
        return np.clip(np.rint(np.asarray(values, dtype=np.float32) / scale), info.min, info.max).astype(_NP_DTYPES[dtype])
    return np.asarray(values).astype(_NP_DTYPES[dtype])


def _from_storage(data: np.ndarray, dtype: Dtype, scale: float = 1.0) -> np.ndarray:
    """What the numpy `process` returns: float32 values (scaled, F16/BF16 decoded)."""
    if dtype == Dtype.BM_FLOAT16:
        return data.view(np.float16).astype(np.float32)
    if dtype == Dtype.BM_BFLOAT16:
        return (data.astype(np.uint32) << np.uint32(16)).view(np.float32)
    return data.astype(np.float32) * np.float32(scale)


# ---------------------------------------------------------------------------------------------
# module functions


def set_decoder_env(*args: Any, **kwargs: Any) -> int:
    """Sets SAIL_DECODER_<key>; Decoder reads it once, at construction."""
    _positional("set_decoder_env", kwargs)
    key, value = args
    os.environ["SAIL_DECODER_" + str(key)] = str(value)
    return 0


def set_print_flag(*args: Any) -> None:
    pass


def get_available_tpu_num() -> int:
    return _profile.devices


def get_dev_stat(*args: Any) -> List[int]:
    """[mem_total, mem_used, tpu_util] in MiB / percent."""
    (dev_id,) = args
    if not 0 <= int(dev_id) < _profile.devices:
        raise SailDeviceError("bm_dev_request failed")
    total, used = _profile.dev_mem[:2]
    return [total, used, 0]


class Handle:
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        _positional("Handle", kwargs)
        (dev_id,) = args
        if not isinstance(dev_id, int) or isinstance(dev_id, bool):
            raise TypeError("__init__(): incompatible constructor arguments (int)")
        if not 0 <= dev_id < _profile.devices:  # bm_dev_query fails (tensor.cpp make_shaptr_bm_handle_t)
            _stdout("[sail] [error] bm_dev_query failed. Maybe the limit for open files (ulimit) has been "
                    "reached, or the given TPU id '%d' is invalid!" % dev_id)
            raise SailDeviceError("init device failure")
        self._dev_id = dev_id

    def get_device_id(self) -> int:
        return self._dev_id

    def get_sn(self) -> str:
        return "FAKE%08d" % self._dev_id

    def get_target(self) -> str:
        return _profile.chip


# ---------------------------------------------------------------------------------------------
# Tensor


class Tensor:
    """A buffer with a sail dtype; which memories it owns is tracked (their contents are one array).

    `Tensor(handle, ndarray[, own_sys_data, own_dev_data=True])` owns host memory by default;
    `Tensor(handle, shape, dtype, own_sys_data=False, own_dev_data=False)` owns neither
    (bind.cpp:295-296). F16/BF16 data is stored as its uint16 bit pattern, as on the device.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        names = ("handle", "data_or_shape", "dtype", "own_sys_data", "own_dev_data")
        bound = dict(zip(names, args))
        bound.update(kwargs)
        shape_or_data = bound.get("data", bound.get("shape", bound.get("data_or_shape")))
        if isinstance(shape_or_data, np.ndarray):
            # (handle, data, own_sys_data, own_dev_data=True): the third positional is own_sys_data
            if len(args) > 2:
                bound = dict(zip(("handle", "data", "own_sys_data", "own_dev_data"), args), **kwargs)
            self._dtype = {v: k for k, v in _NP_DTYPES.items()}.get(shape_or_data.dtype.type, Dtype.BM_FLOAT32)
            self._data = np.ascontiguousarray(shape_or_data, dtype=_NP_DTYPES[self._dtype]).copy()
            self._own_sys = bool(bound.get("own_sys_data", True))
            self._own_dev = bool(bound.get("own_dev_data", True))
        else:
            self._dtype = _enum(Dtype, bound.get("dtype"), "Tensor")
            self._data = np.zeros([int(d) for d in shape_or_data], dtype=_storage(self._dtype))
            self._own_sys = bool(bound.get("own_sys_data", False))
            self._own_dev = bool(bound.get("own_dev_data", False))

    def own_sys_data(self) -> bool:
        return self._own_sys

    def own_dev_data(self) -> bool:
        return self._own_dev

    def shape(self) -> List[int]:
        return list(self._data.shape)

    def dtype(self) -> Dtype:
        return self._dtype

    def update_data(self, data: Any) -> None:
        """pybind11 picks an overload of the exact dtype first, else force-casts to float32."""
        arr = np.asarray(data)
        if arr.dtype.type not in _NP_DTYPES.values():
            arr = arr.astype(np.float32)
        if arr.ndim != self._data.ndim or list(arr.shape) != list(self._data.shape):
            raise SailTensorError("invalid argument")
        if arr.dtype.type is not _storage(self._dtype):
            raise SailTensorError("Wrong dtype of input array!")
        self._data[...] = arr

    def asnumpy(self, shape: Optional[Sequence[int]] = None) -> np.ndarray:
        if shape is None:
            return self._data.copy()
        count = int(np.prod(shape))
        return self._data.reshape(-1)[:count].reshape([int(d) for d in shape]).copy()

    def sync_s2d(self, *args: Any) -> None:
        pass

    def sync_d2s(self, *args: Any) -> None:
        pass


# ---------------------------------------------------------------------------------------------
# Engine

SEED_OUTPUTS = {
    "blip_cap": "output_Concat",
    "blip_itm": "output_Gather",
    "blip_vqa_venc": "output_LayerNormalization",
    "blip_vqa_tenc": "output_LayerNormalization",
    "blip_vqa_tdec": "output_Concat",
}
"""Output names of the published seed bmodels (reference/seed-blip.md §2)."""
_CHIP_IN_NAME = re.compile(r"_(bm1684x|bm1684|bm1688|cv186ah)_", re.IGNORECASE)


class _Graph:
    """One graph of a fake bmodel: an onnxruntime session plus sail's per-graph I/O buffers."""

    def __init__(self, path: str, sidecar: Dict[str, Any]) -> None:
        import onnx
        import onnxruntime

        model = onnx.load(path, load_external_data=False)
        self.name = str(sidecar.get("graph") or model.graph.name)
        self.dynamic = bool(sidecar.get("dynamic", False))
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = 1
        options.log_severity_level = 3
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_BASIC  # fast loads
        self.session = onnxruntime.InferenceSession(path, sess_options=options, providers=["CPUExecutionProvider"])
        fixed = sidecar.get("shapes", {})
        self.onnx_types: Dict[str, str] = {}
        self.in_shapes: Dict[str, List[int]] = {}
        self.in_dtypes: Dict[str, Dtype] = {}
        for node in self.session.get_inputs():
            shape = fixed.get(node.name, node.shape)
            if not all(isinstance(d, int) and d > 0 for d in shape):
                raise ValueError("input %s has dynamic dims %s (give 'shapes' in the sidecar)" % (node.name, node.shape))
            self.in_shapes[node.name] = [int(d) for d in shape]
            self.in_dtypes[node.name] = _sail_dtype(node.type)
            self.onnx_types[node.name] = node.type
        outputs = self.session.get_outputs()
        self.out_onnx: Dict[str, str] = {}  # engine name -> onnx name
        self.out_dtypes: Dict[str, Dtype] = {}
        self.out_scales: Dict[str, float] = {}
        for node in outputs:
            base = SEED_OUTPUTS.get(self.name, node.name) if len(outputs) == 1 else node.name
            engine_name = base + "_f32" if _profile.f32_names else base
            self.out_onnx[engine_name] = node.name
            forced = sidecar.get("output_dtypes", {}).get(base)
            self.out_dtypes[engine_name] = Dtype[forced] if forced else _sail_dtype(node.type)
            self.out_scales[engine_name] = float(sidecar.get("output_scales", {}).get(base, 1.0))
        self.in_bufs = {n: np.zeros(s, dtype=_NP_DTYPES[self.in_dtypes[n]]) for n, s in self.in_shapes.items()}
        first = self.run_onnx()  # learns the output shapes, as the bmodel would state them
        self.out_shapes = {n: list(first[n].shape) for n in self.out_onnx}
        self.out_bufs = {n: np.zeros(self.out_shapes[n], dtype=_storage(self.out_dtypes[n])) for n in self.out_onnx}

    def run_onnx(self) -> Dict[str, np.ndarray]:
        feeds = {n: self.in_bufs[n].astype(_onnx_np(self.onnx_types[n])) for n in self.in_bufs}
        values = self.session.run(list(self.out_onnx.values()), feeds)
        return dict(zip(self.out_onnx, values))

    def infer(self, core_list: Sequence[int] = ()) -> None:
        """bmrt_launch_tensor_ex on the current input buffers, results into the output buffers.
        A core the chip lacks: bmrt logs the failed launch and the old outputs stay (graph.cpp)."""
        if not _cores_exist(core_list):
            _log("bmrt_launch_tensor_ex failed: core_list %s on %s" % (list(core_list), _profile.chip))
            return
        for name, value in self.run_onnx().items():
            self.out_bufs[name] = _to_storage(value, self.out_dtypes[name], self.out_scales[name])

    def outputs_as_float(self) -> Dict[str, np.ndarray]:
        return {n: _from_storage(self.out_bufs[n], self.out_dtypes[n], self.out_scales[n]) for n in self.out_onnx}


def _sail_dtype(onnx_type: str) -> Dtype:
    if onnx_type in ("tensor(int64)", "tensor(int32)"):
        return Dtype.BM_INT32 if _profile.ids_dtype == "INT32" else Dtype.BM_FLOAT32
    return Dtype.BM_FLOAT32


def _onnx_np(onnx_type: str) -> Any:
    return {"tensor(int64)": np.int64, "tensor(int32)": np.int32}.get(onnx_type, np.float32)


_GIL_RATE: List[float] = []


def _hold_gil(seconds: float) -> None:
    """Busy for `seconds` inside one C call that never releases the GIL (like a pybind11 method
    without gil_scoped_release); time.sleep would release it."""
    if seconds <= 0:
        return
    if not _GIL_RATE:
        started = time.perf_counter()
        sum(range(2000000))
        _GIL_RATE.append(2000000 / max(time.perf_counter() - started, 1e-6))
    sum(range(int(seconds * _GIL_RATE[0])))


class Engine:
    """`Engine(bmodel_path, dev_id, iomode)`; one set of I/O buffers per graph, no lock."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        _positional("Engine", kwargs)
        if len(args) != 3 or not isinstance(args[0], str):
            raise TypeError("fake sail: only Engine(bmodel_path: str, dev_id: int, mode: IOMode) is modelled")
        path, dev_id, mode = args
        self._handle = Handle(dev_id)
        self._mode = _enum(IOMode, mode, "Engine.__init__")
        self._graphs: Dict[str, _Graph] = {}
        _hold_gil(_profile.load_s)  # bind.cpp: no gil_scoped_release on the constructor
        sidecar = _read_sidecar(path)
        chip = sidecar.get("chip") or _chip_in_name(path)
        if not os.path.isfile(path) or not os.access(path, os.R_OK):
            _exit_like_390("load bmodel failed")
            raise SailEngineError("invalid bmodel")
        if chip and chip.upper() != _profile.chip:
            _log("bmodel %s is for %s, device is %s" % (os.path.basename(path), chip.upper(), _profile.chip))
            _exit_like_390("load bmodel failed")
            raise SailEngineError("invalid bmodel")
        try:
            graph = _Graph(path, sidecar)
        except Exception as exc:  # anything onnx/onnxruntime refuses is "not a bmodel"
            _log("Load bmodel failed: %s" % str(exc).splitlines()[0])
            _exit_like_390("load bmodel failed")
            raise SailEngineError("invalid bmodel") from None
        self._graphs[graph.name] = graph

    def _graph(self, name: str) -> _Graph:
        graph = self._graphs.get(name)
        if graph is None:
            raise SailEngineError("invalid graph name: %s" % name)
        return graph

    def get_handle(self) -> Handle:
        return self._handle

    def get_device_id(self) -> int:
        return self._handle.get_device_id()

    def get_graph_names(self) -> List[str]:
        return list(self._graphs)

    def graph_is_dynamic(self, *args: Any) -> bool:
        return self._graph(args[0]).dynamic

    def get_input_names(self, *args: Any) -> List[str]:
        return list(self._graph(args[0]).in_shapes)

    def get_output_names(self, *args: Any) -> List[str]:
        return list(self._graph(args[0]).out_onnx)

    def get_input_shape(self, *args: Any) -> List[int]:
        return list(_lookup(self._graph(args[0]).in_shapes, args[1]))

    def get_output_shape(self, *args: Any) -> List[int]:
        return list(_lookup(self._graph(args[0]).out_shapes, args[1]))

    def get_max_input_shapes(self, *args: Any) -> Dict[str, List[int]]:
        return {k: list(v) for k, v in self._graph(args[0]).in_shapes.items()}

    def get_max_output_shapes(self, *args: Any) -> Dict[str, List[int]]:
        return {k: list(v) for k, v in self._graph(args[0]).out_shapes.items()}

    def get_input_dtype(self, *args: Any) -> Dtype:
        return _lookup(self._graph(args[0]).in_dtypes, args[1])

    def get_output_dtype(self, *args: Any) -> Dtype:
        return _lookup(self._graph(args[0]).out_dtypes, args[1])

    def get_input_scale(self, *args: Any) -> float:
        return 1.0

    def get_output_scale(self, *args: Any) -> float:
        return _lookup(self._graph(args[0]).out_scales, args[1])

    def create_input_tensors_map(self, graph_name: str, create_mode: int = -1) -> Dict[str, Tensor]:
        graph = self._graph(graph_name)
        sys_in = self._mode in (IOMode.SYSI, IOMode.SYSIO) or create_mode == 0
        return {n: Tensor(self._handle, s, graph.in_dtypes[n], sys_in, True) for n, s in graph.in_shapes.items()}

    def create_output_tensors_map(self, graph_name: str, create_mode: int = -1) -> Dict[str, Tensor]:
        graph = self._graph(graph_name)
        sys_out = self._mode in (IOMode.SYSO, IOMode.SYSIO) or create_mode == 0
        return {n: Tensor(self._handle, s, graph.out_dtypes[n], sys_out, True) for n, s in graph.out_shapes.items()}

    def process(self, *args: Any, **kwargs: Any) -> Any:
        """numpy form `process(graph_name, input_tensors, core_list=[])` (holds the GIL) or Tensor
        form `process(graph_name, input, output, core_list=[])` (releases it)."""
        names = ("graph_name", "input", "output", "core_list")
        if "input_tensors" in kwargs or (len(args) >= 2 and _is_array_map(args[1])):
            names = ("graph_name", "input_tensors", "core_list")
        bound = dict(zip(names, args))
        bound.update(kwargs)
        if "input_tensors" in bound:
            return self._process_numpy(bound["graph_name"], bound["input_tensors"], bound.get("core_list", []))
        return self._process_tensors(bound["graph_name"], bound["input"], bound["output"], bound.get("core_list", []))

    def _process_numpy(self, graph_name: str, inputs: Dict[str, Any], core_list: List[int]) -> Dict[str, np.ndarray]:
        if self._mode not in (IOMode.SYSI, IOMode.SYSIO):
            _exit_like_390("Error IOMode! If input type is numpy.array, IOMode must be SYSIO or SYSI!")
            raise SailEngineError("bad input")
        graph = self._graph(graph_name)
        arrays = {name: np.ascontiguousarray(value, dtype=np.float32) for name, value in inputs.items()}  # forcecast
        for name, arr in arrays.items():  # engine.cpp:253-309 checks every name and shape first
            if name not in graph.in_shapes:
                _log("Bad input tensor '%s' for %s." % (name, graph_name))
                _exit_like_390("bad input")
                raise SailEngineError("bad input")
            if list(arr.shape) != graph.in_shapes[name]:
                _log("Invalid shape for input tensor '%s': %s" % (name, list(arr.shape)))
                _exit_like_390("bad input")
                raise SailEngineError("bad input")
        for name, arr in arrays.items():
            graph.in_bufs[name][...] = arr.astype(graph.in_bufs[name].dtype)
        self._missing(graph, inputs)
        graph.infer(core_list)
        _hold_gil(_profile.infer_s)
        if self._mode == IOMode.SYSI:  # outputs are copied back only for SYSO/SYSIO
            return {n: np.zeros(s, dtype=np.float32) for n, s in graph.out_shapes.items()}
        return graph.outputs_as_float()

    def _missing(self, graph: _Graph, given: Any) -> None:
        missing = [n for n in graph.in_shapes if n not in given]
        if missing and _profile.strict:
            raise SailEngineError("fake sail (strict): missing input(s) %s: the real sail reuses stale data" % missing)

    def _process_tensors(self, graph_name: str, inputs: Dict[str, Tensor], outputs: Dict[str, Tensor],
                         core_list: List[int]) -> None:
        graph = self._graph(graph_name)
        sys_in = self._mode in (IOMode.SYSI, IOMode.SYSIO)
        sys_out = self._mode in (IOMode.SYSO, IOMode.SYSIO)
        for name, tensor in inputs.items():  # engine.cpp:1104-1128
            if (not tensor._own_sys and sys_in) or not tensor._own_dev:
                _log("IOMode Error!, Not found system or device memory in input tensor: %s" % name)
                raise SailEngineError("bad input")
        for name, tensor in outputs.items():
            if (not tensor._own_sys and sys_out) or not tensor._own_dev:
                _log("IOMode Error!, Not found system or device memory in output tensor: %s" % name)
                raise SailEngineError("bad output")
        for name, tensor in inputs.items():
            if name not in graph.in_shapes:
                raise SailEngineError("bad input")
            if list(tensor._data.shape) != graph.in_shapes[name]:
                raise SailEngineError("bad input")
            graph.in_bufs[name][...] = tensor._data.astype(graph.in_bufs[name].dtype)
        self._missing(graph, inputs)
        graph.infer(core_list)  # onnxruntime releases the GIL while it runs, as bmrt does here
        if _profile.infer_s > 0:
            time.sleep(_profile.infer_s)  # releases the GIL: py::call_guard<gil_scoped_release>
        if sys_out:
            for name, tensor in outputs.items():
                tensor._data[...] = _lookup(graph.out_bufs, name).reshape(tensor._data.shape)


def _lookup(table: Dict[str, Any], name: str) -> Any:
    if name not in table:
        raise SailEngineError("invalid tensor name: %s" % name)
    return table[name]


def _is_array_map(value: Any) -> bool:
    return isinstance(value, dict) and not any(isinstance(v, Tensor) for v in value.values())


_CHIP_CORES = {"BM1688": 2, "CV186AH": 1}
"""Chips whose builds honour core_list (BMCV_VERSION_MAJOR > 1) and their cores; others ignore it."""


def _cores_exist(core_list: Sequence[int]) -> bool:
    cores = _CHIP_CORES.get(_profile.chip)
    return cores is None or all(0 <= int(core) < cores for core in core_list)


def _read_sidecar(path: str) -> Dict[str, Any]:
    side = path + ".json"
    if not os.path.isfile(side):
        return {}
    with open(side, "r", encoding="utf-8") as fh:
        return dict(json.load(fh))


def _chip_in_name(path: str) -> str:
    found = _CHIP_IN_NAME.search(os.path.basename(path))
    return found.group(1) if found else ""


# ---------------------------------------------------------------------------------------------
# BMImage, Bmcv


class BMImage:
    """A frame in device memory. The double keeps a byte image as BGR uint8 HxWx3 and remembers the
    format it claims (colour conversions are exact); a DATA_TYPE_EXT_FLOAT32 image keeps float32
    planes (3,H,W) in its format's channel order."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        _positional("BMImage", kwargs)
        self._bgr: Optional[np.ndarray] = None
        self._float: Optional[np.ndarray] = None
        self._format = Format.FORMAT_BGR_PACKED
        self._dtype = ImgDtype.DATA_TYPE_EXT_1N_BYTE
        self._pts_dts = [0.0, 0.0]
        if args:
            _, height, width, fmt, dtype = args
            self._format = _enum(Format, fmt, "BMImage.__init__")
            self._dtype = _enum(ImgDtype, dtype, "BMImage.__init__")
            if self._dtype == ImgDtype.DATA_TYPE_EXT_FLOAT32:
                self._float = np.zeros((3, int(height), int(width)), dtype=np.float32)
            else:
                self._bgr = np.zeros((int(height), int(width), 3), dtype=np.uint8)

    def _set(self, bgr: np.ndarray, fmt: Format) -> None:
        self._bgr, self._float, self._format = bgr, None, fmt
        self._dtype = ImgDtype.DATA_TYPE_EXT_1N_BYTE

    def _shape(self) -> Tuple[int, int]:
        if self._float is not None:
            return int(self._float.shape[1]), int(self._float.shape[2])
        if self._bgr is not None:
            return int(self._bgr.shape[0]), int(self._bgr.shape[1])
        return 0, 0

    def _byte_bgr(self, what: str) -> np.ndarray:
        if self._float is not None:
            raise SailBMImageError("fake sail: %s of a float32 image is not modelled" % what)
        if self._bgr is None:
            raise SailBMImageError("empty BMImage")
        return self._bgr

    def _planes(self) -> np.ndarray:
        """(3,H,W) in the format's channel order: R,G,B for RGB formats, B,G,R for BGR ones."""
        if self._float is not None:
            return self._float
        bgr = self._byte_bgr("planes")
        if self._format in _RGB_FORMATS:
            return bgr[:, :, ::-1].transpose(2, 0, 1)
        if self._format in _BGR_FORMATS:
            return bgr.transpose(2, 0, 1)
        raise SailBMImageError("fake sail: per-plane access to %s is not modelled" % self._format.name)

    def width(self) -> int:
        return self._shape()[1]

    def height(self) -> int:
        return self._shape()[0]

    def format(self) -> Format:
        return self._format

    def dtype(self) -> ImgDtype:
        return self._dtype

    def get_pts_dts(self) -> List[float]:
        return list(self._pts_dts)

    def asmat(self) -> np.ndarray:
        """uint8 HxWx3 BGR from any format (sophon-opencv toMAT)."""
        return self._byte_bgr("asmat").copy()

    def _asnumpy(self) -> np.ndarray:
        """asnumpy(): the raw layout: packed (H,W,3), planar (3,H,W), YUV420 (H*3/2,W). 3.9.1+
        (bound as `asnumpy` only under such a profile: `_apply_features`)."""
        if self._float is not None:
            if self._format not in (Format.FORMAT_RGB_PLANAR, Format.FORMAT_BGR_PLANAR):
                raise SailBMImageError("fake sail: asnumpy of a packed float32 image is not modelled")
            return self._float.copy()
        bgr = self._byte_bgr("asnumpy")
        if self._format in (Format.FORMAT_BGR_PACKED,):
            return bgr.copy()
        if self._format == Format.FORMAT_RGB_PACKED:
            return bgr[:, :, ::-1].copy()
        if self._format in (Format.FORMAT_BGR_PLANAR, Format.FORMAT_RGB_PLANAR):
            return np.ascontiguousarray(self._planes())
        import cv2

        return cv2.cvtColor(bgr, cv2.COLOR_BGR2YUV_I420)


_NO_CONVERT_TO = ("BM1688", "CV186AH")
"""Chips libsophon's bmcv_image_convert_to docs do not list (they name BM1684 and BM1684X)."""


def _uninitialised(image: "BMImage") -> None:
    """What device memory nobody wrote holds: arbitrary bits (reproducible here)."""
    height, width = image.height(), image.width()
    bits = np.random.RandomState(height * 7919 + width).randint(0, 2 ** 32, size=(3, height, width), dtype=np.uint64)
    if image.dtype() == ImgDtype.DATA_TYPE_EXT_FLOAT32:
        image._float = bits.astype(np.uint32).view(np.float32)
    else:
        image._bgr = (bits % 256).astype(np.uint8).transpose(1, 2, 0).copy()


_RGB_FORMATS = (Format.FORMAT_RGB_PLANAR, Format.FORMAT_RGB_PACKED)
_BGR_FORMATS = (Format.FORMAT_BGR_PLANAR, Format.FORMAT_BGR_PACKED)
_PLANAR_FORMATS = (Format.FORMAT_RGB_PLANAR, Format.FORMAT_BGR_PLANAR)
_PACKED_FORMATS = (Format.FORMAT_RGB_PACKED, Format.FORMAT_BGR_PACKED)


class Bmcv:
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        _positional("Bmcv", kwargs)
        (self._handle,) = args

    def _resize(self, image: BMImage, width: int, height: int, alg: Any, what: str) -> BMImage:
        import cv2

        alg = _enum(bmcv_resize_algorithm, alg, what)
        if alg == bmcv_resize_algorithm.BMCV_INTER_BICUBIC and _profile.chip == "BM1684X":
            _log("%s: BM1684X supports only NEAREST and LINEAR" % what)
            raise SailBMImageError("%s err" % what)
        flags = {0: cv2.INTER_NEAREST, 1: cv2.INTER_LINEAR, 2: cv2.INTER_CUBIC}[int(alg)]
        out = BMImage()
        bgr = image._byte_bgr(what)
        out._set(cv2.resize(bgr, (int(width), int(height)), interpolation=flags), image.format())
        return out

    def resize(self, input: BMImage, resize_w: int, resize_h: int,  # noqa: A002 (sail's keyword)
               resize_alg: Any = bmcv_resize_algorithm.BMCV_INTER_NEAREST) -> BMImage:
        return self._resize(input, resize_w, resize_h, resize_alg, "bmcv_image_resize")

    def vpp_resize(self, input: BMImage, *rest: Any, **kwargs: Any) -> Any:  # noqa: A002
        """vpp_resize(img, w, h, alg=NEAREST) -> BMImage, or vpp_resize(img, out, w, h, alg) -> int."""
        if rest and isinstance(rest[0], BMImage):
            out, width, height = rest[0], rest[1], rest[2]
            alg = rest[3] if len(rest) > 3 else kwargs.get("resize_alg", bmcv_resize_algorithm.BMCV_INTER_NEAREST)
            done = self._resize(input, width, height, alg, "bmcv_image_vpp_convert")
            out._set(done.asmat(), out.format())
            return 0
        width = rest[0] if rest else kwargs["resize_w"]
        height = rest[1] if len(rest) > 1 else kwargs["resize_h"]
        alg = rest[2] if len(rest) > 2 else kwargs.get("resize_alg", bmcv_resize_algorithm.BMCV_INTER_NEAREST)
        return self._resize(input, width, height, alg, "bmcv_image_vpp_convert")

    def convert_format(self, input: BMImage, image_format: Any = Format.FORMAT_BGR_PLANAR) -> BMImage:  # noqa: A002
        out = BMImage()
        out._set(input._byte_bgr("convert_format").copy(), _enum(Format, image_format, "convert_format"))
        return out

    def convert_to(self, *args: Any, **kwargs: Any) -> Any:
        """convert_to(img, ab) -> BMImage of the input's dtype (uint8 saturated), or
        convert_to(img, out, ab) -> 0 into `out`'s dtype; ab = ((a0,b0),(a1,b1),(a2,b2)) per plane."""
        _positional("convert_to", kwargs)
        if len(args) == 2:
            image, alpha_beta = args
            out = BMImage(self._handle, image.height(), image.width(), image.format(), image.dtype())
        else:
            image, out, alpha_beta = args
        if image.format() != out.format():
            raise SailBMImageError("fake sail: convert_to between formats (%s -> %s) is not modelled"
                                   % (image.format().name, out.format().name))
        if (out.width(), out.height()) != (image.width(), image.height()):
            raise SailBMImageError("fake sail: convert_to into an image of another size is not modelled")
        pairs = [(np.float32(a), np.float32(b)) for a, b in alpha_beta]  # std::pair<float, float>
        if len(pairs) != 3:
            raise TypeError("convert_to(): alpha_beta must be three (a, b) pairs")
        if _profile.chip in _NO_CONVERT_TO and image.format() in _PLANAR_FORMATS:
            # cvwrapper.cpp: bmcv_image_convert_to fails, sail printf()s and returns BM_SUCCESS
            _stdout("bmcv_image_convert_to error, src.format=%d, dst.format=%d" % (image.format(), out.format()))
            _profile.log.append("bmcv_image_convert_to error")
            _uninitialised(out)
            return out if len(args) == 2 else 0
        planes = image._planes().astype(np.float32)
        result = np.empty(planes.shape, dtype=np.float32)
        for index, (a, b) in enumerate(pairs):
            np.multiply(planes[index], a, out=result[index], dtype=np.float32)
            result[index] += b
        if out.dtype() == ImgDtype.DATA_TYPE_EXT_FLOAT32:
            out._float = result
        else:
            data = np.clip(np.rint(result), 0, 255).astype(np.uint8)
            bgr = data.transpose(1, 2, 0)
            out._set(np.ascontiguousarray(bgr[:, :, ::-1] if out.format() in _RGB_FORMATS else bgr), out.format())
        return out if len(args) == 2 else 0

    def bm_image_to_tensor(self, *args: Any) -> Tensor:
        """Tensor [1,3,H,W] (planar) or [1,H,W,3] (packed) over the image's device memory: no
        system memory (own_sys_data False), so asnumpy() copies device -> host."""
        (image,) = args
        if image.format() in _PLANAR_FORMATS:
            data = image._planes()[None]
        elif image.format() in _PACKED_FORMATS:
            data = image._planes().transpose(1, 2, 0)[None]
        else:
            _log("Image format not supported, Please convert it first.")
            raise SailBMImageError("not supported")
        return Tensor(self._handle, np.ascontiguousarray(data), False, True)

    def imencode(self, *args: Any) -> np.ndarray:
        import cv2

        ext, image = args
        ok, data = cv2.imencode(str(ext), image.asmat())
        if not ok:
            raise SailBMImageError("imencode failed")
        return np.asarray(data, dtype=np.uint8).reshape(-1)


# ---------------------------------------------------------------------------------------------
# Decoder

SAIL_ERR_DEV_HANDLE = 1004
SAIL_ERR_DEC_OPEN = 5003
SAIL_ERR_DEC_READ = 5006
SAIL_ERR_DEC_EOF = 5007
_REOPEN_AFTER = 20
_DECODER_DEFAULTS = {"rtsp_transport": "tcp", "stimeout": "20000000", "rtsp_flags": "prefer_tcp"}


class Decoder:
    """`Decoder(path_or_url, compressed=True, dev_id=0)` (positional); cv2.VideoCapture underneath."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        _positional("Decoder", kwargs)
        if not 1 <= len(args) <= 3:
            raise TypeError("__init__(): incompatible constructor arguments")
        self._path = str(args[0])
        self._compressed = bool(args[1]) if len(args) > 1 else True
        self._dev_id = int(args[2]) if len(args) > 2 else 0
        self._is_rtsp = self._path.startswith("rtsp:")  # cvwrapper.cpp:523: compare(0, 5, "rtsp:")
        self.options = _decoder_options(self._is_rtsp)  # read once: reconnect reuses them
        _profile.opens.append((self._path, dict(self.options)))
        self._cap: Any = None
        self._opened = False
        self._eof = False
        self._errcnt = 0
        self._pts = 0.0
        self._open()

    def _open(self) -> None:
        """avformat_open_input with the cached options; prints the URL as sail does."""
        import cv2

        _stdout("decoder ctor: filepath=%s" % self._path)
        _stdout("open filepath=%s" % self._path)
        params: List[int] = []
        if self._is_rtsp:  # everything else gets no socket timeout at all from sail
            timeout_ms = max(1, int(self.options.get("stimeout", _DECODER_DEFAULTS["stimeout"])) // 1000)
            params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, timeout_ms, cv2.CAP_PROP_READ_TIMEOUT_MSEC, timeout_ms]
        cap = cv2.VideoCapture(self._path, cv2.CAP_FFMPEG, params) if os.path.exists(self._path) or "://" in self._path else None
        if cap is None or not cap.isOpened():
            if cap is not None:
                cap.release()
            self._opened = False
            _stdout("[sail] [error] Failed to open input file: %s, ret: -5" % self._path)
            raise RuntimeError("Failed to open input file")
        self._cap, self._opened, self._eof, self._errcnt = cap, True, False, 0

    def is_opened(self) -> bool:
        return self._opened

    def get_fps(self) -> float:
        import cv2

        fps = self._cap.get(cv2.CAP_PROP_FPS) if self._cap is not None else 0
        return float(fps) if fps and fps > 0 else -1.0

    def get_frame_shape(self) -> List[int]:
        import cv2

        if self._cap is None:
            return [1, 3, 0, 0]
        return [1, 3, int(self._cap.get(cv2.CAP_PROP_FRAME_HEIGHT)), int(self._cap.get(cv2.CAP_PROP_FRAME_WIDTH))]

    def get_pts_dts(self) -> List[float]:
        return [self._pts, self._pts]

    def _is_eof(self) -> bool:
        """is_eof(): 3.10.2+ (bound only under such a profile: `_apply_features`)."""
        return self._eof

    def read(self, *args: Any) -> Any:
        """read(handle, bmimg) -> int; read(handle) -> BMImage or SailDecoderError."""
        if len(args) == 1:
            image = BMImage()
            ret = self._read(args[0], image)
            if ret != 0:
                raise SailDecoderError("Decoder read failed, ret=%d" % ret)
            return image
        handle, image = args
        return self._read(handle, image)

    def _fail_code(self, eof: bool) -> int:
        if not _profile.at_least("3.9.1"):
            return 1
        if eof and _profile.at_least("3.10.2"):
            return SAIL_ERR_DEC_EOF
        return SAIL_ERR_DEC_READ

    def _read(self, handle: Handle, image: BMImage) -> int:
        if handle.get_device_id() != self._dev_id and _profile.at_least("3.9.1"):
            return SAIL_ERR_DEV_HANDLE
        if not self._opened:
            return SAIL_ERR_DEC_OPEN if _profile.at_least("3.9.1") else 4  # BM_ERR_PARAM
        if self._errcnt >= _REOPEN_AFTER:
            self._reset_decode()
        if self._eof and _profile.at_least("3.10.2"):
            return SAIL_ERR_DEC_EOF  # grab() keeps answering EOF
        ok, frame = self._cap.read()
        if not ok or frame is None:
            self._eof = (not self._is_rtsp) or _profile.rtsp_drop == "eof"
            code = self._fail_code(self._eof)
            if code != SAIL_ERR_DEC_EOF:
                self._errcnt += 1
            _stdout("[sail] [info] Decoder read end or err=%d" % code)
            return code
        import cv2

        self._pts = float(self._cap.get(cv2.CAP_PROP_POS_MSEC)) / 1000.0
        self._errcnt = 0
        fmt = Format.FORMAT_COMPRESSED if self._compressed else Format.FORMAT_NV12
        if image._bgr is not None and (image.width(), image.height()) != (frame.shape[1], frame.shape[0]):
            frame = cv2.resize(frame, (image.width(), image.height()), interpolation=cv2.INTER_LINEAR)
            fmt = image.format()  # VPP-converted into the caller's image
        image._set(frame, fmt)
        image._pts_dts = [self._pts, self._pts]
        return 0

    def _reset_decode(self) -> None:
        self.release()
        try:
            self._open()
        except RuntimeError:
            raise SailDecoderError("reconnect failed") from None

    def reconnect(self) -> int:
        if not self._opened:
            return 1
        self._reset_decode()
        return 0

    def release(self) -> None:
        cap, self._cap = self._cap, None
        if cap is not None:
            cap.release()
        self._opened = False
        self._eof = False


_GLOBAL_DECODER_KEYS = ("skip_non_idr", "fflags")
"""SAIL_DECODER_* keys read for every source; the others (rtsp_transport, stimeout, ...) are read by
get_ffmpeg_valuse() only for URLs starting with `rtsp:` (cvwrapper.cpp:523)."""


def _decoder_options(is_rtsp: bool) -> Dict[str, str]:
    options: Dict[str, str] = {}
    prefix = "SAIL_DECODER_"
    for key, value in os.environ.items():
        if key.startswith(prefix) and (is_rtsp or key[len(prefix):] in _GLOBAL_DECODER_KEYS):
            options[key[len(prefix):]] = value
    if is_rtsp:
        for key, value in _DECODER_DEFAULTS.items():
            options.setdefault(key, value)
        os.environ.setdefault("OPENCV_FFMPEG_CAPTURE_OPTIONS", "rtsp_transport;%s" % options["rtsp_transport"])
    return options


def _apply_features() -> None:
    """Bind the methods the profile's release has, unbind the others (hasattr then tells, as on a
    real build): `BMImage.asnumpy` from 3.9.1, `Decoder.is_eof` from 3.10.2."""
    for cls, name, impl, since in ((BMImage, "asnumpy", BMImage._asnumpy, "3.9.1"),
                                   (Decoder, "is_eof", Decoder._is_eof, "3.10.2")):
        if _profile.at_least(since):
            setattr(cls, name, impl)
        elif name in cls.__dict__:
            delattr(cls, name)


_apply_features()
