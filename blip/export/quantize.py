"""A split-layout package -> an int8 copy, each graph's precision chosen by measuring it.

Vision graphs try two ONNX Runtime quantizations: static QDQ (uint8 activations, int8 per-channel
weights, the weight MatMul/Gemm/Conv nodes only: activation x activation products and the
softmax stay float) calibrated on frames preprocessed exactly as the runtime does, and dynamic
int8 (weights int8, activations quantized per call). Text, question and decoder graphs try
dynamic int8. Every candidate is run against the fp32 graph on held-out inputs: the vision graph
on held-out calibration frames, the others on the feeds the fp32 tasks gave them for those frames
(recorded while captioning, matching and answering them). The fastest candidate whose error stays
inside the bars (`Bars`: output cosine, greedy-token agreement) and that is faster than fp32 by
`Bars.min_speedup` is kept; a
graph with none stays float. The manifest records each graph's precision, the measurement and
the calibration's provenance (docs/model-package.md).

Calibration: `--calibration` is an npz holding `pixel_values` float32 [N,3,S,S] or a folder
written by `python -m blip.export.calibration` (DIR/<S>/frame_*.npz); without it, seeded synthetic
frames go through the runtime's preprocessing (camera footage is better: a warning says so).
One frame in HOLD_OUT_EVERY is held out of calibration and used for the error figures.
"""
import logging
import os
import platform
import shutil
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import yaml

from blip.errors import ExportError, ImageError, PackageError
from blip.graphs import LAYOUT_SPLIT
from blip.package import PRECISION_FP32, PRECISION_INT8, ModelPackage
from blip.runtime.base import Graph, Runtime

log = logging.getLogger(__name__)

PathLike = Union[str, Path]
MIN_FRAMES = 32
HOLD_OUT_EVERY = 4
SYNTHETIC_FRAMES = 64
PARTS = {"vision": ("vision",), "text": ("text", "question", "decoder_init", "decoder_step")}
RECORD_FRAMES = 6  # held-out frames the fp32 tasks run on to record the text graphs' inputs
RECORD_EVERY = 3  # a decoder step graph keeps one call in this many (its calls repeat a lot)
RECORD_MAX = 12  # recorded calls kept per graph
TIMING_ROUNDS = 3
TIMING_MIN_MS = 300.0  # below this much fp32 time, more rounds (up to TIMING_MAX_ROUNDS)
TIMING_MAX_ROUNDS = 50
TIMING_FEEDS = 4  # inputs per timed pass (the error figures use every held-out input)
PROMPTS = ["a person standing at the gate", "a red car parked on the street", "a dog", "an empty road"]
QUESTIONS = ["what color is the car?", "how many people are there?"]


@dataclass(frozen=True)
class Bars:
    """What an int8 graph must meet to be kept (the manifest records them)."""

    cosine_min: float = 0.99  # mean cosine of each float output vs fp32 over the held-out inputs
    argmax_min: float = 0.98  # share of rows whose logits argmax agrees with fp32 (greedy decoding's token)
    min_speedup: float = 1.05  # an int8 graph that is not faster than this is not worth its error

    def passes(self, errors: Mapping[str, float]) -> bool:
        for key, value in errors.items():
            if key.endswith("_cosine") and not value >= self.cosine_min:
                return False
            if key == "logits_argmax_agreement" and not value >= self.argmax_min:
                return False
        return True


BARS = Bars()


@dataclass
class GraphChoice:
    """What was decided for one graph file (shared files are decided once)."""

    file: str
    role: str
    precision: str = PRECISION_FP32
    method: str = "none"
    fp32_ms: float = 0.0
    int8_ms: float = 0.0
    errors: Dict[str, float] = field(default_factory=dict)
    reason: str = ""

    @property
    def speedup(self) -> float:
        return self.fp32_ms / self.int8_ms if self.int8_ms > 0 else 0.0

    def manifest_entry(self) -> Dict[str, Any]:
        """The `quantization` block of the graph's manifest entry."""
        entry: Dict[str, Any] = {"method": self.method, "reason": self.reason}
        if self.int8_ms > 0:
            entry["speedup_vs_fp32"] = round(self.speedup, 3)
        entry.update({k: round(float(v), 5) for k, v in self.errors.items()})
        return entry


@dataclass(frozen=True)
class Calibration:
    """Calibration pixels per image size, and where they came from (for the manifest)."""

    pixels: Dict[int, np.ndarray]
    provenance: Dict[str, Any]

    def split(self, size: int) -> Tuple[np.ndarray, np.ndarray]:
        """(calibration frames, held-out frames) of one size."""
        frames = self.pixels[size]
        held = np.zeros(len(frames), bool)
        held[HOLD_OUT_EVERY - 1::HOLD_OUT_EVERY] = True
        return frames[~held], frames[held]


# ----------------------------------------------------------------------------------- inputs


def check_package(package_dir: PathLike) -> Tuple[ModelPackage, Dict[str, Any]]:
    """The source package and its manifest document; PackageError unless it is a float split package."""
    package = ModelPackage.load(str(package_dir))
    for task, spec in package.tasks.items():
        if spec.layout != LAYOUT_SPLIT:
            raise PackageError("package %s: task %s has layout %s; quantize takes split packages (seed "
                               "graphs get INT8 from compile_bmodel.sh)" % (package.path, task, spec.layout))
        if spec.backend != "onnxruntime":
            raise PackageError("package %s: task %s is built for backend %s; quantize takes ONNX packages"
                               % (package.path, task, spec.backend))
        for role, graph in spec.graphs.items():
            if graph.precision != PRECISION_FP32:
                raise PackageError("package %s is already %s (task %s, graph %s); quantize its float source"
                                   % (package.path, graph.precision, task, role))
    with open(os.path.join(package.path, "manifest.yaml"), encoding="utf-8") as handle:
        doc = yaml.safe_load(handle)
    return package, doc


def vision_sizes(package: ModelPackage) -> List[int]:
    return sorted({spec.image_size for spec in package.tasks.values()})


def load_calibration(path: Optional[PathLike], package: ModelPackage) -> Calibration:
    """Calibration pixels for every image size of the package; ImageError on a file that cannot serve."""
    from blip.package import file_sha256

    sizes = vision_sizes(package)
    if path is None:
        log.warning("no --calibration: calibrating on %d synthetic frames; frames of the cameras' own "
                    "footage (python -m blip.export.calibration) give better int8 ranges", SYNTHETIC_FRAMES)
        pixels = {size: synthetic_pixels(package, size, SYNTHETIC_FRAMES) for size in sizes}
        return Calibration(pixels, {"kind": "synthetic", "frames": SYNTHETIC_FRAMES, "seed": 0})
    path = Path(path)
    if path.is_dir():
        pixels = {size: _read_folder(path, size) for size in sizes}
        digest = {str(size): _folder_digest(path / str(size)) for size in sizes}
    elif path.is_file():
        pixels = _read_npz(path, sizes)
        digest = {"file": file_sha256(str(path))}
    else:
        raise ImageError("calibration %s: no such file or folder" % path)
    for size, frames in pixels.items():
        if len(frames) < MIN_FRAMES:
            raise ImageError("calibration %s: %d frames of %dx%d, need at least %d"
                             % (path, len(frames), size, size, MIN_FRAMES))
        if not np.all(np.isfinite(frames)):
            raise ImageError("calibration %s: frames of %dx%d hold NaN or infinite values" % (path, size, size))
    count = min(len(f) for f in pixels.values())
    return Calibration(pixels, {"kind": "file", "path": str(path), "frames": count, "sha256": digest})


def _read_npz(path: Path, sizes: Sequence[int]) -> Dict[int, np.ndarray]:
    try:
        with np.load(str(path)) as data:
            if "pixel_values" not in data.files:
                raise ImageError("calibration %s: no pixel_values array (it has: %s)"
                                 % (path, ", ".join(data.files) or "none"))
            frames = np.asarray(data["pixel_values"], np.float32)
    except (OSError, ValueError) as exc:
        raise ImageError("calibration %s: not a readable npz file: %s" % (path, exc)) from None
    if frames.ndim != 4 or frames.shape[1] != 3 or frames.shape[2] != frames.shape[3]:
        raise ImageError("calibration %s: pixel_values has shape %s, expected [N,3,S,S]" % (path, list(frames.shape)))
    if len(sizes) != 1 or frames.shape[2] != sizes[0]:
        want = " and ".join("%dx%d" % (s, s) for s in sizes)
        raise ImageError("calibration %s: frames are %dx%d, the package's vision graphs take %s"
                         % (path, frames.shape[2], frames.shape[3], want))
    return {sizes[0]: frames}


def _read_folder(path: Path, size: int) -> np.ndarray:
    """DIR/<size>/*.npz as written by blip.export.calibration, each [1,3,size,size]."""
    files = sorted((path / str(size)).glob("*.npz"))
    if not files:
        raise ImageError("calibration %s: no %s/*.npz: frames of %dx%d are needed (python -m "
                         "blip.export.calibration --package PKG ...)" % (path, size, size, size))
    frames = []
    for file in files:
        with np.load(str(file)) as data:
            frames.append(np.asarray(data["pixel_values"], np.float32).reshape(-1, 3, size, size))
    return np.concatenate(frames)


def _folder_digest(folder: Path) -> str:
    import hashlib

    digest = hashlib.sha256()
    for file in sorted(folder.glob("*.npz")):
        digest.update(file.name.encode() + file.read_bytes())
    return digest.hexdigest()


def synthetic_pixels(package: ModelPackage, size: int, count: int, seed: int = 0) -> np.ndarray:
    """`count` seeded 640x360 BGR frames (colour fields, blocks and noise) preprocessed as the runtime does."""
    from blip.preprocess import preprocess

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:360, 0:640].astype(np.float32)
    pp = package.preprocess
    out = []
    for _ in range(count):
        frame = rng.uniform(0, 255, 3) + rng.uniform(-0.3, 0.3, 3) * xx[..., None] + rng.uniform(-0.3, 0.3, 3) * yy[..., None]
        for _ in range(int(rng.integers(1, 5))):
            y, x = int(rng.integers(0, 300)), int(rng.integers(0, 560))
            frame[y:y + int(rng.integers(20, 160)), x:x + int(rng.integers(20, 240))] = rng.uniform(0, 255, 3)
        frame = np.clip(frame + rng.normal(0, 12, frame.shape), 0, 255).astype(np.uint8)
        out.append(preprocess(frame, size, pp.mean, pp.std, pp.interpolation))
    return np.concatenate(out)


# ----------------------------------------------------------------------- recorded feeds


class _Recorder(Graph):
    """Passes calls through to the fp32 graph and keeps some of their feeds (by reference)."""

    def __init__(self, graph: Graph, store: List[Dict[str, np.ndarray]]) -> None:
        self.path, self.inputs, self.outputs = graph.path, graph.inputs, graph.outputs
        self._graph, self._store, self._calls = graph, store, 0
        self._every = RECORD_EVERY if "self_kv" in graph.inputs else 1

    def run(self, feeds: Mapping[str, np.ndarray]) -> Dict[str, np.ndarray]:
        if self._calls % self._every == 0 and len(self._store) < RECORD_MAX:
            self._store.append({k: np.asarray(v) for k, v in feeds.items()})
        self._calls += 1
        return self._graph.run(feeds)


class _RecordingRuntime(Runtime):
    name = "onnxruntime"

    def __init__(self, runtime: Runtime) -> None:
        self._runtime = runtime
        self.feeds: Dict[str, List[Dict[str, np.ndarray]]] = {}

    def load(self, path: str, graph_name: Optional[str] = None) -> Graph:
        return _Recorder(self._runtime.load(path, graph_name), self.feeds.setdefault(os.path.realpath(path), []))


def record_feeds(package: ModelPackage, runtime: Runtime, held_out: Mapping[int, np.ndarray]) -> Dict[str, List[Dict[str, np.ndarray]]]:
    """realpath of each graph -> feeds the fp32 tasks gave it on the held-out frames."""
    from blip.answer import Answerer
    from blip.caption import Captioner
    from blip.match import Matcher

    recording = _RecordingRuntime(runtime)
    classes = {"caption": Captioner, "match": Matcher, "answer": Answerer}
    prompts = {"p%d" % i: p for i, p in enumerate(PROMPTS)}
    questions = {"q%d" % i: q for i, q in enumerate(QUESTIONS)}
    for task, spec in package.tasks.items():
        runner = classes[task](package, recording)
        for pixels in held_out[spec.image_size][:RECORD_FRAMES]:
            embeds = runner.embed_pixels(pixels[None])
            if task == "caption":
                runner.caption_ids_from_embeds(embeds)
            elif task == "match":
                runner.scores_from_embeds(embeds, prompts)
            else:
                runner.answer_ids_from_embeds(embeds, questions)
    return recording.feeds


# --------------------------------------------------------------------------- quantizing


def _preprocessed(src: Path, work: Path) -> Path:
    """ONNX Runtime's recommended pre-pass (graph optimisation, ONNX shape inference); the graph
    itself where it fails. Its symbolic shape inference is skipped: it refuses our text graphs'
    dynamic shapes and, when it fails, leaves temporary files in the current directory."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    out = work / ("pre-%s-%s" % (src.parent.name, src.name))
    failed = out.with_suffix(".failed")
    if out.exists() or failed.exists():  # the candidates of one graph share the pre-pass
        return src if failed.exists() else out
    try:
        quant_pre_process(str(src), str(out), skip_symbolic_shape=True)
        return out
    except Exception as exc:  # the pre-pass raises assorted errors; the graph is still usable
        log.info("%s: quantization pre-pass skipped (%s)", src.name, str(exc).splitlines()[0] if str(exc) else exc)
        failed.touch()
        return src


def _weight_matmul_excludes(path: Path) -> List[str]:
    """MatMul nodes whose second input is not a weight: they stay float in the static scheme."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    weights = {init.name for init in model.graph.initializer}
    return [n.name for n in model.graph.node if n.op_type == "MatMul" and n.input[1] not in weights]


def quantize_dynamic_graph(src: Path, dst: Path, work: Path) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(str(_preprocessed(src, work)), str(dst), weight_type=QuantType.QInt8,
                     op_types_to_quantize=["MatMul", "Gemm"], per_channel=True)


def quantize_static_graph(src: Path, dst: Path, work: Path, frames: np.ndarray) -> None:
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                          quantize_static)

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._it = iter(frames)

        def get_next(self) -> Optional[Dict[str, np.ndarray]]:
            frame = next(self._it, None)
            return None if frame is None else {"pixel_values": frame[None]}

    pre = _preprocessed(src, work)
    quantize_static(str(pre), str(dst), Reader(), quant_format=QuantFormat.QDQ,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, per_channel=True,
                    op_types_to_quantize=["MatMul", "Gemm", "Conv"], nodes_to_exclude=_weight_matmul_excludes(pre),
                    calibrate_method=CalibrationMethod.MinMax)


# ---------------------------------------------------------------------------- measuring


def compare_outputs(ref: Sequence[Mapping[str, np.ndarray]], got: Sequence[Mapping[str, np.ndarray]]) -> Dict[str, float]:
    """Per float output: mean cosine over calls (name_cosine); for `logits`, argmax agreement."""
    errors: Dict[str, float] = {}
    for name in ref[0]:
        if ref[0][name].dtype.kind != "f":
            continue
        cos = [cosine(a[name], b[name]) for a, b in zip(ref, got)]
        errors[name + "_cosine"] = float(np.mean(cos))
        if name == "logits":
            agree = [np.mean(np.argmax(a[name], -1) == np.argmax(b[name], -1)) for a, b in zip(ref, got)]
            errors["logits_argmax_agreement"] = float(np.mean(agree))
    return errors


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    a64, b64 = a.astype(np.float64).ravel(), b.astype(np.float64).ravel()
    denom = np.linalg.norm(a64) * np.linalg.norm(b64)
    return float(a64 @ b64 / denom) if denom > 0 else float(np.array_equal(a64, b64))


def time_graphs(graphs: Sequence[Graph], feeds: Sequence[Mapping[str, np.ndarray]]) -> List[float]:
    """Median ms of one pass over (the first TIMING_FEEDS of) `feeds` per graph; the graphs take
    turns so load from other processes hits them alike."""
    run = lambda g: [g.run(f) for f in feeds[:TIMING_FEEDS]]  # noqa: E731
    for graph in graphs:
        run(graph)
    times: List[List[float]] = [[] for _ in graphs]
    rounds = 0
    # small graphs get more rounds (a 1 ms graph timed 3 times is noise), big ones TIMING_ROUNDS
    while rounds < TIMING_ROUNDS or (sum(times[0]) < TIMING_MIN_MS and rounds < TIMING_MAX_ROUNDS):
        rounds += 1
        for i, graph in enumerate(graphs):
            start = time.perf_counter()
            run(graph)
            times[i].append(1000 * (time.perf_counter() - start))
    return [statistics.median(t) for t in times]


def choose(choice: GraphChoice, src: Path, feeds: Sequence[Mapping[str, np.ndarray]], runtime: Runtime,
           candidates: Mapping[str, Callable[[Path], None]], work: Path, bars: Bars = BARS) -> Optional[Path]:
    """Make every candidate, check its error, then time fp32 and all candidates in one loop (taking
    turns, so load from other processes cannot favour one); fill `choice` and return the chosen
    int8 file, or None to keep the fp32 graph."""
    fp32 = runtime.load(str(src))
    ref = [fp32.run(f) for f in feeds]
    made: List[Tuple[str, Path, Graph, Dict[str, float]]] = []
    notes = []
    for method, make in candidates.items():
        out = work / ("%s-%s-%s" % (method, choice.role, src.name))
        try:
            make(out)
            graph = runtime.load(str(out))
        except Exception as exc:  # a quantizer or a kernel that refuses this graph: keep the others
            log.warning("%s %s: %s int8 failed: %s", choice.file, choice.role, method, str(exc).splitlines()[0] if str(exc) else exc)
            notes.append("%s failed" % method)
            continue
        made.append((method, out, graph, compare_outputs(ref, [graph.run(f) for f in feeds])))
    if not made:
        fp32.close()
        choice.reason = "; ".join(notes) + ": kept float"
        return None
    times = time_graphs([fp32] + [graph for _, _, graph, _ in made], feeds)
    best: Optional[Tuple[float, str, Path]] = None
    for (method, out, graph, errors), int8_ms in zip(made, times[1:]):
        graph.close()
        speed = times[0] / int8_ms
        log.info("%s %s: %s int8 %.2fx fp32 (%.1f vs %.1f ms), %s", choice.file, choice.role, method, speed,
                 int8_ms, times[0], ", ".join("%s %.4f" % kv for kv in errors.items()))
        if not bars.passes(errors):
            notes.append("%s error too large (%.2fx)" % (method, speed))
        elif speed < bars.min_speedup:
            notes.append("%s not faster (%.2fx)" % (method, speed))
        else:
            notes.append("%s %.2fx" % (method, speed))
            if best is None or speed > best[0]:
                best = (speed, method, out)
        if best is None or best[1] == method:  # the chosen one, else the last measured
            choice.errors, choice.fp32_ms, choice.int8_ms, choice.method = errors, times[0], int8_ms, method
    fp32.close()
    if best is None:
        choice.precision, choice.reason = PRECISION_FP32, "; ".join(notes) + ": kept float"
        return None
    choice.precision = PRECISION_INT8
    choice.reason = "fastest int8 within the error bars: " + "; ".join(notes)
    return best[2]


# ------------------------------------------------------------------------------ package


@dataclass
class QuantizeResult:
    """The written package and the decision for each distinct graph file."""

    path: Path
    choices: List[GraphChoice]

    def table(self) -> List[str]:
        """Printable lines: per graph, precision, method, speed vs fp32 and the error figures."""
        lines = ["%-32s %-12s %-9s %-11s %8s %9s %9s  %s" % ("graph", "role", "precision", "method", "speedup",
                                                              "fp32 ms", "int8 ms", "held-out error")]
        for c in self.choices:
            errors = ", ".join("%s %.4f" % kv for kv in c.errors.items()) or "-"
            lines.append("%-32s %-12s %-9s %-11s %7.2fx %9.1f %9.1f  %s  [%s]" % (
                c.file, c.role, c.precision, c.method, c.speedup, c.fp32_ms, c.int8_ms, errors, c.reason))
        return lines


def parse_parts(text: str) -> Tuple[str, ...]:
    """"vision,text" -> ("vision", "text"); PackageError naming an unknown part."""
    parts = tuple(p.strip() for p in text.split(",") if p.strip())
    unknown = [p for p in parts if p not in PARTS]
    if not parts or unknown:
        raise PackageError("--parts %r: parts are %s" % (text, ", ".join(PARTS)))
    return parts


def _graph_files(package: ModelPackage) -> Dict[str, Tuple[str, int]]:
    """Relative path of each distinct graph file -> (its role, its task's image size)."""
    files: Dict[str, Tuple[str, int]] = {}
    for spec in package.tasks.values():
        for role, graph in spec.graphs.items():
            files.setdefault(os.path.relpath(graph.path, package.path), (role, spec.image_size))
    return files


def quantize_package(
    src: PathLike,
    out_dir: PathLike,
    calibration: Optional[PathLike] = None,
    parts: Sequence[str] = ("vision", "text"),
    threads: Optional[int] = None,
    command: Optional[str] = None,
    bars: Bars = BARS,
) -> QuantizeResult:
    """Write an int8 copy of the split package `src` at `out_dir` (see the module docstring).

    Bad input (PackageError, ImageError) is raised before anything slow runs.
    """
    from blip.export.api import check_output, stage_package
    from blip.runtime import create_runtime

    package, doc = check_package(src)
    out_dir = Path(out_dir)
    try:
        check_output(out_dir)
    except ExportError as exc:
        raise PackageError(str(exc)) from None
    roles = {role for part in parts for role in PARTS[part]}
    calib = load_calibration(calibration, package)
    runtime = create_runtime("onnxruntime", device=None, threads=threads)
    held_out = {size: calib.split(size)[1] for size in calib.pixels}
    start = time.monotonic()
    feeds = record_feeds(package, runtime, held_out) if roles - {"vision"} else {}
    choices: List[GraphChoice] = []

    def write(staging: Path) -> None:
        work = Path(tempfile.mkdtemp(prefix="quantize-"))
        try:
            for rel, (role, size) in _graph_files(package).items():
                choice = GraphChoice(rel, role)
                choices.append(choice)
                (staging / rel).parent.mkdir(parents=True, exist_ok=True)
                chosen = None
                if role in roles:
                    chosen = _quantize_one(choice, Path(package.path) / rel, size, calib, feeds, runtime, work, bars)
                else:
                    choice.reason = "part not asked for"
                shutil.copyfile(str(chosen or Path(package.path) / rel), str(staging / rel))
            shutil.copytree(package.tokenizer_dir, str(staging / os.path.relpath(package.tokenizer_dir, package.path)))
            _write_manifest(staging, doc, choices, calib, src, command, bars)
        finally:
            shutil.rmtree(str(work), ignore_errors=True)

    stage_package(out_dir, write)
    log.info("int8 package %s written in %.0f s", out_dir, time.monotonic() - start)
    return QuantizeResult(out_dir, choices)


def _quantize_one(choice: GraphChoice, src: Path, size: int, calib: Calibration,
                  feeds: Mapping[str, List[Dict[str, np.ndarray]]], runtime: Runtime, work: Path,
                  bars: Bars) -> Optional[Path]:
    candidates: Dict[str, Callable[[Path], None]] = {}
    if choice.role == "vision":
        train, held = calib.split(size)
        graph_feeds: List[Dict[str, np.ndarray]] = [{"pixel_values": p[None]} for p in held]
        candidates["static-qdq"] = lambda out: quantize_static_graph(src, out, work, train)
    else:
        graph_feeds = feeds.get(os.path.realpath(str(src)), [])
        if not graph_feeds:
            choice.reason = "no recorded inputs to check it on: kept float"
            return None
    candidates["dynamic"] = lambda out: quantize_dynamic_graph(src, out, work)
    return choose(choice, src, graph_feeds, runtime, candidates, work, bars)


def _write_manifest(staging: Path, doc: Mapping[str, Any], choices: Sequence[GraphChoice], calib: Calibration,
                    src: PathLike, command: Optional[str], bars: Bars) -> None:
    import onnxruntime

    from blip.export import manifest

    by_file = {c.file: c for c in choices}
    out = dict(doc)
    for body in out["tasks"].values():
        for entry in body["graphs"].values():
            choice = by_file[os.path.normpath(entry["file"])]
            entry["sha256"] = manifest.sha256_of(staging / entry["file"])
            entry["precision"] = choice.precision
            entry["quantization"] = choice.manifest_entry()
    source = dict(out.get("source") or {})
    source["quantized"] = {
        "from": str(src),
        "from_manifest_sha256": manifest.sha256_of(Path(src) / "manifest.yaml"),
        "command": command or "blip.export.quantize",
        "calibration": dict(calib.provenance, held_out_every=HOLD_OUT_EVERY),
        "bars": {"cosine_min": bars.cosine_min, "argmax_min": bars.argmax_min, "min_speedup": bars.min_speedup},
        "onnxruntime": str(onnxruntime.__version__),
        "cpu_flags": cpu_flags(),
        "machine": platform.machine(),
    }
    out["source"] = source
    manifest.write_manifest(staging, out)


def cpu_flags() -> List[str]:
    """The CPU features int8 speed depends on (VNNI: int8 dot products), from /proc/cpuinfo."""
    wanted = ("avx2", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni", "amx_int8", "avx512_bf16")
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("flags"):
                    have = set(line.split(":", 1)[1].split())
                    return [f for f in wanted if f in have]
    except OSError:
        pass
    return []
