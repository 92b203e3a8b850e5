"""Model package: manifest.yaml, checksums, which graphs serve which task (docs/model-package.md).

Everything is checked at load so that a broken package fails once, at start-up, with one line naming
the package and the file, instead of failing later on the first frame.
"""
import hashlib
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Dict, Mapping, NoReturn, Optional, Tuple

import yaml

from blip.errors import PackageError
from blip.graphs import LAYOUT_SEED, LAYOUT_SPLIT, SPLIT_IO, SPLIT_ROLES, TASKS, split_io
from blip.runtime.base import Graph, GraphLoader, Runtime, static_dim

if TYPE_CHECKING:
    from blip.tokenizer import Tokenizer

MANIFEST = "manifest.yaml"
FORMAT = 1
BACKENDS = ("onnxruntime", "sail")
LAYOUTS = (LAYOUT_SPLIT, LAYOUT_SEED)
INTERPOLATIONS = ("bicubic", "bilinear")
PRECISION_FP32, PRECISION_INT8 = "fp32", "int8"
PRECISIONS = (PRECISION_FP32, PRECISION_INT8)
"""A graph's `precision` in the manifest: fp32 (the default, absent in exported packages) or int8
(written by `blipd quantize`). The runtime runs both the same way: ONNX Runtime reads the
quantized operators from the graph itself, so an int8 package needs no config change."""
# The sophon-demo bmodels (reference/seed-blip.md §2): one role per published file.
SEED_ROLES: Dict[str, Tuple[str, ...]] = {
    "caption": ("cap",),
    "match": ("itm",),
    "answer": ("venc", "tenc", "tdec"),
}
_CHUNK = 1 << 20


@dataclass(frozen=True)
class Preprocess:
    """Image normalisation of the package: RGB mean/std applied after /255, and the resize filter."""

    mean: Tuple[float, float, float]
    std: Tuple[float, float, float]
    interpolation: str = "bicubic"


@dataclass(frozen=True)
class GraphFile:
    """One graph file: absolute path, the sha256 the manifest promises and its precision."""

    path: str
    sha256: str
    precision: str = PRECISION_FP32


@dataclass(frozen=True)
class TaskSpec:
    """One task of a package. `graphs` maps role -> file; `settings` are the task's generation
    settings (treat both as read-only). `package` is the package name, for error messages."""

    name: str
    backend: str
    layout: str
    image_size: int
    graphs: Dict[str, GraphFile]
    settings: Dict[str, Any]
    package: str = ""


@dataclass(frozen=True)
class ModelPackage:
    """A loaded, verified model package folder."""

    name: str
    path: str
    preprocess: Preprocess
    tasks: Dict[str, TaskSpec]
    tokenizer_dir: str
    source: Dict[str, Any] = field(default_factory=dict)

    @classmethod
    def load(cls, path: str, verify_checksums: bool = True) -> "ModelPackage":
        """Read and verify `path`/manifest.yaml; raises PackageError with one line on any problem."""
        return _load(os.path.abspath(path), verify_checksums)

    def task(self, name: str) -> TaskSpec:
        """The spec of task `name`, or PackageError listing the tasks the package has."""
        spec = self.tasks.get(name)
        if spec is None:
            have = ", ".join(sorted(self.tasks)) or "none"
            raise PackageError("package %s has no task %r (it has: %s)" % (self.name, name, have))
        return spec

    def tokenizer(self) -> "Tokenizer":
        """A new tokenizer for this package (one per engine: it keeps small caches).
        Imported here: the tokenizers library is only needed once a task runs."""
        from blip.tokenizer import Tokenizer as _Tokenizer

        return _Tokenizer.from_dir(self.tokenizer_dir)


def _load(root: str, verify_checksums: bool) -> ModelPackage:
    label = root
    manifest_path = os.path.join(root, MANIFEST)
    if not os.path.isdir(root):
        raise PackageError("package %s: folder not found" % root)
    try:
        with open(manifest_path, "r", encoding="utf-8") as fh:
            doc = yaml.safe_load(fh)
    except FileNotFoundError:
        raise PackageError("package %s: %s not found" % (label, MANIFEST)) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise PackageError("package %s: %s: cannot read: %s" % (label, MANIFEST, exc)) from None
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        line = " line %d:" % (where.line + 1) if where is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise PackageError("package %s: %s:%s invalid YAML: %s" % (label, MANIFEST, line, problem)) from None
    if not isinstance(doc, dict):
        raise PackageError("package %s: %s: expected a mapping at the top" % (label, MANIFEST))
    name = doc.get("name") or os.path.basename(root.rstrip(os.sep))
    ctx = _Ctx(str(name), root)
    if doc.get("format", FORMAT) != FORMAT:
        ctx.fail(MANIFEST, "format %r is not supported (this version reads format %d)" % (doc.get("format"), FORMAT))
    tokenizer_dir = _tokenizer_dir(ctx, doc.get("tokenizer", "tokenizer"))
    preprocess = _preprocess(ctx, doc.get("preprocess"))
    tasks_doc = doc.get("tasks")
    if not isinstance(tasks_doc, dict) or not tasks_doc:
        ctx.fail(MANIFEST, "'tasks' must map at least one of %s to its graphs" % ", ".join(TASKS))
    tasks = {str(task): _task(ctx, str(task), body, verify_checksums) for task, body in tasks_doc.items()}
    source = doc.get("source") if isinstance(doc.get("source"), dict) else {}
    return ModelPackage(ctx.name, root, preprocess, tasks, tokenizer_dir, source)


class _Ctx:
    """Names the package in every error."""

    def __init__(self, name: str, root: str) -> None:
        self.name = name
        self.root = root

    def fail(self, what: str, message: str) -> NoReturn:
        raise PackageError("package %s (%s): %s: %s" % (self.name, self.root, what, message))


def _tokenizer_dir(ctx: _Ctx, rel: Any) -> str:
    if not isinstance(rel, str) or not rel:
        ctx.fail(MANIFEST, "'tokenizer' must name a folder")
    path = os.path.join(ctx.root, rel)
    if not any(os.path.isfile(os.path.join(path, f)) for f in ("tokenizer.json", "vocab.txt")):
        ctx.fail(rel, "tokenizer folder has neither tokenizer.json nor vocab.txt")
    return path


def _triple(ctx: _Ctx, key: str, value: Any) -> Tuple[float, float, float]:
    if not isinstance(value, (list, tuple)) or len(value) != 3:
        ctx.fail(MANIFEST, "preprocess.%s must be a list of 3 numbers" % key)
    try:
        a, b, c = (float(v) for v in value)
    except (TypeError, ValueError):
        ctx.fail(MANIFEST, "preprocess.%s must be a list of 3 numbers" % key)
    return (a, b, c)


def _preprocess(ctx: _Ctx, doc: Any) -> Preprocess:
    if not isinstance(doc, dict):
        ctx.fail(MANIFEST, "'preprocess' must be a mapping with mean, std and interpolation")
    mean = _triple(ctx, "mean", doc.get("mean"))
    std = _triple(ctx, "std", doc.get("std"))
    if min(std) <= 0:
        ctx.fail(MANIFEST, "preprocess.std must be positive")
    interpolation = doc.get("interpolation", "bicubic")
    if interpolation not in INTERPOLATIONS:
        ctx.fail(MANIFEST, "preprocess.interpolation %r is not one of %s" % (interpolation, ", ".join(INTERPOLATIONS)))
    return Preprocess(mean, std, interpolation)


def _task(ctx: _Ctx, task: str, body: Any, verify_checksums: bool) -> TaskSpec:
    where = "%s: task %s" % (MANIFEST, task)
    if task not in TASKS:
        ctx.fail(where, "unknown task (tasks are %s)" % ", ".join(TASKS))
    if not isinstance(body, dict):
        ctx.fail(where, "must be a mapping")
    backend, layout = body.get("backend"), body.get("layout", LAYOUT_SPLIT)
    if backend not in BACKENDS:
        ctx.fail(where, "unknown backend %r (backends are %s)" % (backend, ", ".join(BACKENDS)))
    if layout not in LAYOUTS:
        ctx.fail(where, "unknown layout %r (layouts are %s)" % (layout, ", ".join(LAYOUTS)))
    size = body.get("image_size")
    if not isinstance(size, int) or isinstance(size, bool) or size <= 0:
        ctx.fail(where, "image_size must be a positive integer")
    settings = body.get("settings") or {}
    if not isinstance(settings, dict):
        ctx.fail(where, "settings must be a mapping")
    graphs_doc = body.get("graphs")
    if not isinstance(graphs_doc, dict):
        ctx.fail(where, "graphs must map each role to {file, sha256}")
    needed = (SPLIT_ROLES if layout == LAYOUT_SPLIT else SEED_ROLES)[task]
    missing = [r for r in needed if r not in graphs_doc]
    if missing:
        ctx.fail(where, "layout %s needs graph role(s) %s" % (layout, ", ".join(missing)))
    graphs = {str(role): _graph(ctx, task, str(role), entry, verify_checksums) for role, entry in graphs_doc.items()}
    return TaskSpec(task, backend, layout, size, graphs, dict(settings), ctx.name)


def _graph(ctx: _Ctx, task: str, role: str, entry: Any, verify_checksums: bool) -> GraphFile:
    where = "%s: task %s: graph %s" % (MANIFEST, task, role)
    if not isinstance(entry, dict) or not isinstance(entry.get("file"), str) or not entry.get("file"):
        ctx.fail(where, "must be {file: ..., sha256: ...}")
    rel = entry["file"]
    expected = str(entry.get("sha256", "")).strip().lower()
    if len(expected) != 64 or any(ch not in "0123456789abcdef" for ch in expected):
        ctx.fail(rel, "sha256 in the manifest must be 64 hex digits")
    path = os.path.normpath(os.path.join(ctx.root, rel))
    if os.path.isabs(rel) or not path.startswith(ctx.root + os.sep):
        ctx.fail(rel, "graph files must lie inside the package folder")
    if not os.path.isfile(path):
        ctx.fail(rel, "graph file not found (task %s, role %s)" % (task, role))
    precision = entry.get("precision", PRECISION_FP32)
    if precision not in PRECISIONS:
        ctx.fail(rel, "precision %r is not one of %s" % (precision, ", ".join(PRECISIONS)))
    if verify_checksums:
        actual = file_sha256(path)
        if actual != expected:
            ctx.fail(rel, "sha256 mismatch: manifest %s..., file %s... (corrupt or replaced)"
                     % (expected[:12], actual[:12]))
    return GraphFile(path, expected, precision)


def file_sha256(path: str) -> str:
    """Hex sha256 of a file, read in chunks (graph files can be gigabytes)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verify_graph_io(spec: TaskSpec, role: str, graph: Graph) -> None:
    """Check that `graph` has the tensor names and ranks `role` needs (blip.graphs.SPLIT_IO)."""
    if role not in SPLIT_IO:
        raise PackageError("package %s: task %s: unknown graph role %r" % (spec.package, spec.name, role))
    label = spec.graphs[role].path if role in spec.graphs else getattr(graph, "path", role)
    want_in, want_out = split_io(role, _decoder_layers(graph) if role == "decoder_step" else 0)
    for kind, want, have in (("input", want_in, graph.inputs), ("output", want_out, graph.outputs)):
        for tensor, rank in want.items():
            spec_t = have.get(tensor)
            if spec_t is None:
                raise PackageError(
                    "package %s: %s (task %s, role %s): missing %s tensor %r (graph has: %s)"
                    % (spec.package, label, spec.name, role, kind, tensor, ", ".join(sorted(have)) or "none")
                )
            if len(spec_t.shape) != rank:
                raise PackageError(
                    "package %s: %s (task %s, role %s): %s tensor %r has rank %d, the role needs %d"
                    % (spec.package, label, spec.name, role, kind, tensor, len(spec_t.shape), rank)
                )


def _decoder_layers(graph: Graph) -> int:
    """Lyr of a decoder_step graph (self_kv's first dim), which names its cross inputs; 0 if unknown
    (the missing or wrong self_kv is then reported by the name and rank check)."""
    return static_dim(graph, "self_kv", 0) or 0


def open_task(
    package: ModelPackage,
    runtime: Runtime,
    task: str,
    loader: Optional[GraphLoader] = None,
    layouts: Tuple[str, ...] = (LAYOUT_SPLIT,),
) -> Tuple[TaskSpec, Dict[str, Graph]]:
    """Load and verify the graphs of `task` on `runtime`: the common start of every task class.

    `layouts` are the layouts the caller knows how to run; another layout is a PackageError, so a
    package made for the sophon bmodels fails clearly where its runner does not exist.
    """
    spec = package.task(task)
    if spec.layout not in layouts:
        raise PackageError(
            "package %s: task %s has layout %r, which this runner does not run (it runs: %s)"
            % (package.name, task, spec.layout, ", ".join(layouts))
        )
    if runtime.name and spec.backend != runtime.name:
        raise PackageError(
            "package %s: task %s is built for backend %s, but the runtime is %s"
            % (package.name, task, spec.backend, runtime.name)
        )
    loader = loader or GraphLoader(runtime)
    roles = (SPLIT_ROLES if spec.layout == LAYOUT_SPLIT else SEED_ROLES)[task]
    graphs: Dict[str, Graph] = {}
    for role in roles:
        graphs[role] = loader.load(spec.graphs[role].path)
        if spec.layout == LAYOUT_SPLIT:
            verify_graph_io(spec, role, graphs[role])
    return spec, graphs


def merged_settings(spec: TaskSpec, override: Optional[Mapping[str, Any]]) -> Dict[str, Any]:
    """The task's settings with `override` applied on top (the benchmark forces min_length)."""
    merged = dict(spec.settings)
    merged.update(override or {})
    return merged
