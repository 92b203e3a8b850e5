"""What `blipd doctor` measures: every task of a package on one runtime (outputs, end-to-end and
per-graph median times) and N seconds of each `decoder: sail` stream (frames, errors, end codes,
device pixels against CPU preprocessing of the same frames).

Each function returns plain dicts (the JSON evidence) and never raises for a failure of the box:
a failure is written into the result (`error`) so one broken part does not hide the others.
"""
import os
import statistics
import time
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

import numpy as np

from blip.errors import BlipError
from blip.runtime.base import Graph, Runtime

PIXEL_FRAMES = 3
"""Frames of each sail stream whose device pixels are compared with the CPU's."""


def median_ms(call: Callable[[], Any], runs: int) -> float:
    """Median wall time of `runs` calls, in milliseconds."""
    times = []
    for _ in range(max(1, runs)):
        started = time.perf_counter()
        call()
        times.append((time.perf_counter() - started) * 1000.0)
    return round(statistics.median(times), 3)


class _TimedGraph(Graph):
    """A loaded graph that keeps a copy of the feeds of its last call, so it can be timed alone."""

    def __init__(self, inner: Graph, label: str) -> None:
        self.inner = inner
        self.label = label
        self.path = inner.path
        self.inputs = inner.inputs
        self.outputs = inner.outputs
        self.feeds: Optional[Dict[str, np.ndarray]] = None

    def __getattr__(self, name: str) -> Any:  # backend extras (e.g. a sail graph's name)
        return getattr(self.inner, name)

    def run(self, feeds: Mapping[str, np.ndarray]) -> Dict[str, np.ndarray]:
        self.feeds = {key: np.array(value, copy=True) for key, value in feeds.items()}
        return self.inner.run(feeds)

    def close(self) -> None:
        self.inner.close()


class TimedRuntime(Runtime):
    """Wraps a runtime; `graphs` holds every graph it loaded, by a label relative to `root`."""

    def __init__(self, inner: Runtime, root: str) -> None:
        self.inner = inner
        self.name = inner.name
        self.root = root
        self.graphs: Dict[str, _TimedGraph] = {}

    def load(self, path: str, graph_name: Optional[str] = None) -> Graph:
        label = os.path.relpath(path, self.root) + (":" + graph_name if graph_name else "")
        graph = _TimedGraph(self.inner.load(path, graph_name), label)
        self.graphs[label] = graph
        return graph

    def close(self) -> None:
        self.inner.close()


def task_calls(engine: Any, frame: np.ndarray, prompts: Mapping[str, str],
               questions: Mapping[str, str]) -> Dict[str, Tuple[Callable[[], Any], Callable[[Any], Dict[str, Any]]]]:
    """task -> (one end-to-end call on `frame`, how to describe its result as JSON)."""
    calls: Dict[str, Tuple[Callable[[], Any], Callable[[Any], Dict[str, Any]]]] = {}
    if engine.captioner is not None:
        cap = engine.captioner
        calls["caption"] = (lambda: cap.caption_ids(frame), lambda ids: {"ids": list(ids), "text": cap.text(ids)})
    if engine.matcher is not None:
        match = engine.matcher
        calls["match"] = (lambda: match.scores(frame, prompts),
                          lambda scores: {"scores": {k: round(float(v), 6) for k, v in scores.items()}})
    if engine.answerer is not None:
        ans = engine.answerer
        calls["answer"] = (lambda: ans.answer_ids(frame, questions),
                           lambda ids: {"ids": {k: list(v) for k, v in ids.items()},
                                        "text": {k: ans.text(v) for k, v in ids.items()}})
    return calls


def run_tasks(package: Any, make_runtime: Callable[[], Runtime], frame: np.ndarray, prompts: Mapping[str, str],
              questions: Mapping[str, str], runs: int) -> Dict[str, Any]:
    """Load every task of `package` on one runtime, run each on `frame`, time tasks and graphs.

    Returns {"backend", "tasks": {task: {"output", "median_ms"} or {"error"}}, "graphs": {label:
    median_ms}, "error"?}."""
    from blip.engine import Engine

    result: Dict[str, Any] = {"backend": None, "tasks": {}, "graphs": {}}
    try:
        runtime = TimedRuntime(make_runtime(), package.path)
        result["backend"] = runtime.name
        started = time.perf_counter()
        engine = Engine(package, runtime, tasks=tuple(package.tasks))
        result["load_s"] = round(time.perf_counter() - started, 3)
    except BlipError as exc:
        result["error"] = str(exc).splitlines()[0]
        return result
    try:
        for task, (call, describe) in task_calls(engine, frame, prompts, questions).items():
            try:
                output = call()
                result["tasks"][task] = {"output": describe(output), "median_ms": median_ms(call, runs)}
            except BlipError as exc:
                result["tasks"][task] = {"error": str(exc).splitlines()[0]}
        for label, graph in sorted(runtime.graphs.items()):
            feeds = graph.feeds
            if feeds is None:
                continue
            try:
                result["graphs"][label] = median_ms(lambda: graph.inner.run(feeds), runs)  # noqa: B023 (called now)
            except BlipError as exc:
                result["graphs"][label] = {"error": str(exc).splitlines()[0]}
    finally:
        engine.close()
    return result


def compare(task: str, got: Mapping[str, Any], reference: Mapping[str, Any]) -> Dict[str, Any]:
    """tokens_identical (caption, answer) or score_max_diff (match) of two task outputs."""
    if task == "match":
        ours, theirs = got["scores"], reference["scores"]
        return {"score_max_diff": round(max((abs(ours[k] - theirs[k]) for k in ours), default=0.0), 6)}
    return {"tokens_identical": got["ids"] == reference["ids"]}


def decode_stream(stream: Any, device: int, plan: Any, seconds: float) -> Dict[str, Any]:
    """Decode `stream` with SailSource for up to `seconds` (a file stops at its end): frames,
    resolution, errors, the end and its sail code, and device pixels vs CPU preprocessing."""
    from blip.preprocess import preprocess
    from daemon.errors import SourceError
    from daemon.pipeline.sources.base import SourceEnded
    from daemon.pipeline.sources.sail_decoder import SailSource
    from daemon.pipeline.streams import source_spec

    out: Dict[str, Any] = {"frames": 0, "errors": [], "width": None, "height": None, "end": None,
                           "read_code": None, "pixels_compared": 0, "pixels_missing": 0}
    diffs: List[Tuple[float, float]] = []
    src = SailSource(source_spec(stream, device=device, preprocess=plan))
    started = time.monotonic()
    try:
        src.open()
        while time.monotonic() - started < seconds:
            if not src.grab():
                reason = src.end_reason()
                out["read_code"] = src.read_code
                if isinstance(reason, SourceEnded):
                    out["end"] = str(reason)
                else:
                    out["errors"].append(str(reason))
                break
            out["frames"] += 1
            if out["frames"] > PIXEL_FRAMES:
                continue
            image = src.retrieve()
            if image is None:
                out["errors"].append("frame %d: retrieve gave no image" % (out["frames"] - 1))
                continue
            out["height"], out["width"] = int(image.shape[0]), int(image.shape[1])
            pixels = src.pixels() if plan is not None else None
            if plan is not None and pixels is None:
                out["pixels_missing"] += 1
            for size, values in (pixels or {}).items():
                cpu = preprocess(image, size, plan.mean, plan.std, plan.interpolation)
                diff = np.abs(values.astype(np.float64) - cpu)
                diffs.append((float(diff.mean()), float(diff.max())))
                out["pixels_compared"] += 1
    except SourceError as exc:
        out["errors"].append(str(exc))
    finally:
        src.close()
    out["seconds"] = round(time.monotonic() - started, 3)
    if diffs:
        out["preprocess_mean_abs_diff"] = round(max(d[0] for d in diffs), 6)
        out["preprocess_max_abs_diff"] = round(max(d[1] for d in diffs), 6)
    return out
