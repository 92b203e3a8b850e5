"""What the daemon path costs the model, measured in one run against a bare `Engine.infer` loop.

One model (BLIP-base-sized random graphs exported once into a temp dir, or `--tiny`'s package) and
H.264 25 fps clips made with ffmpeg, 640x360 unless `--size`: a camera's substream, which is what
the daemon should be given (the model sees 384x384; decoding a 720p main stream in software costs
2.7x more CPU for nothing, 11% of 2 cores for three streams, and caps the ratio below near 0.89).
The daemon runs as a subprocess (bench/common.py's runner: `Service.run()` plus a counters dump
at exit); a ZeroMQ subscriber here timestamps what it receives.
Every stream's prompts are set so each inferred frame publishes one `match` event per prompt, which
gives a completion time and a capture->subscriber latency for every inferred frame.

  pipeline_over_model_only      frames/s of the daemon (3 looping streams played at their real rate,
                                each sampled at twice what the worker can do) over frames/s of a bare
                                loop calling Engine.infer on pre-decoded frames of the same clip,
                                same tasks; one pair per repetition, median/min/max over reps
  static_scene_inference_ratio  inferences on a moving clip / on a static (noisy still) clip of the
                                same length, both played once with the scene gate on
  overload_p95_latency_s        4 streams each offered what the worker can do (4x in all): p95 of
                                capture -> received at the subscriber, against max_frame_age_s + one
                                model-only inference time
  overload_rss_growth_mb        daemon RSS at the end minus at the start of the overload window
  drops_accounted               decoded == inferred + failed + every drop, every stream of every run
  int8_daemon_fps_over_fp32     with --int8: daemon frames/s with an int8 copy of the package (made
                                here by `blipd quantize`'s library call, synthetic calibration) over
                                frames/s with the fp32 package, windows alternating in the same reps

Beside them, figures a loaded machine disturbs less: the daemon's CPU seconds per inferred frame,
split into the bare loop's CPU per frame, decoding (3 readers alone, measured here for a few seconds)
and the rest of the daemon path; and the share of the cores decoding takes (the ratio's ceiling).

Usage: python bench/pipeline.py --json OUT [--quick] [--reps N] [--tiny] [--tasks match,caption] [--size WxH] [--int8]
Nothing is asserted: figures are printed with their targets and written to OUT.
"""
import argparse
import dataclasses
import json
import logging
import os
import shutil
import statistics
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import common  # noqa: E402
from bench.blip_tasks import PROMPTS, make_int8  # noqa: E402

log = logging.getLogger("bench.pipeline")

TARGETS = {
    "pipeline_over_model_only": (">=", 0.90),
    "static_scene_inference_ratio": (">=", 10.0),
    "overload_p95_over_bound": ("<=", 1.0),
    "overload_rss_growth_mb": ("<", 50.0),
    "drops_accounted": ("==", True),
}
N_PROMPTS = 3
STREAMS = 3
OVERLOAD_STREAMS = 4
MAX_FRAME_AGE_S = 2.0
LOOP_CLIP_S = 20.0
SCENE_MAX_S = 28.0
"""Scene clips stay under the default max_skip_s (30 s): a static scene is then inferred exactly once."""
STARTUP_TIMEOUT_S = 300.0


@dataclass(frozen=True)
class Plan:
    """Durations of one run (seconds); `--quick` shortens them and says so in the output."""

    reps: int
    model_only_s: float
    warm_s: float
    window_s: float
    overload_warm_s: float
    overload_s: float
    decode_s: float
    min_frames: int
    """windows stretch (within limits) so a slow machine still times this many inferences"""


QUICK = Plan(reps=2, model_only_s=12, warm_s=3, window_s=12, overload_warm_s=5, overload_s=20,
             decode_s=8, min_frames=5)
FULL = Plan(reps=3, model_only_s=30, warm_s=8, window_s=30, overload_warm_s=10, overload_s=60,
            decode_s=15, min_frames=10)


@dataclass
class Session:
    """What one daemon run gave: marker events in the window, /proc samples, final counters."""

    frames: List[Tuple[float, float, float, str]]
    window: Tuple[float, float]
    samples: List[Tuple[float, Dict[str, float]]]
    counters: Dict[str, Any]
    exit_code: Optional[int]
    stop_s: Optional[float]
    events: Dict[str, int] = field(default_factory=dict)
    cpu_s_per_s: Optional[float] = None

    def fps(self) -> Optional[float]:
        """Completed frames per second: (k-1) intervals between the first and last of k completions."""
        times = sorted(f[0] for f in self.frames)
        if len(times) < 2 or times[-1] <= times[0]:
            return None
        return (len(times) - 1) / (times[-1] - times[0])


# -- setup ----------------------------------------------------------------------------------------
def build_package(work: Path, args: argparse.Namespace, tasks: Sequence[str]) -> Path:
    if args.package:
        return Path(args.package).resolve()
    started = time.monotonic()
    if args.tiny:
        package = common.tiny_package(work, tasks)
    else:
        package = common.base_package(work, tasks)
    log.info("package %s ready in %.0f s", package, time.monotonic() - started)
    return package


def make_engine(package: Path, tasks: Sequence[str]) -> Any:
    """The engine the daemon's worker builds (Service._default_engine): same runtime, same tasks."""
    from blip.engine import Engine
    from blip.package import ModelPackage
    from blip.runtime import create_runtime

    pkg = ModelPackage.load(str(package))
    return Engine(pkg, create_runtime("onnxruntime", device=0, threads=None), tasks=tuple(sorted(tasks)))


def model_only(engine: Any, frames: List[Any], tasks: Sequence[str], seconds: float,
               min_calls: int) -> Tuple[List[float], float]:
    """Seconds per `Engine.infer` call over pre-decoded frames, for about `seconds` (one warm-up call),
    and the CPU seconds per call (this process: ONNX Runtime's threads included)."""
    prompts = {"p%d" % i: text for i, text in enumerate(PROMPTS[:N_PROMPTS])}
    questions = {"q0": "what color is the car?"} if "answer" in tasks else None
    caption = "caption" in tasks

    def call(index: int) -> None:
        engine.infer(frames[index % len(frames)], caption=caption, prompts=prompts, questions=questions)

    call(0)
    times: List[float] = []
    cpu_before = os.times()
    started = time.perf_counter()
    while time.perf_counter() - started < seconds or len(times) < min_calls:
        begin = time.perf_counter()
        call(len(times) + 1)
        times.append(time.perf_counter() - begin)
    cpu_after = os.times()
    cpu = (cpu_after.user + cpu_after.system) - (cpu_before.user + cpu_before.system)
    return times, cpu / len(times)


# -- daemon sessions ------------------------------------------------------------------------------
def run_window(work: Path, tag: str, package: Path, streams: List[Dict[str, Any]], defaults: Dict[str, Any],
               warm_s: float, window_s: float) -> Session:
    """Start the daemon, wait for its first inferred frame plus `warm_s`, record `window_s`, stop it."""
    endpoint = common.free_endpoint()
    config = common.write_config(work / (tag + ".yaml"), package, endpoint, streams, defaults)
    samples: List[Tuple[float, Dict[str, float]]] = []
    cpu: List[Tuple[float, Optional[float]]] = []
    with common.Subscriber(endpoint) as sub:
        daemon = common.DaemonProcess(config).start()
        try:
            first = sub.first_frame_after(0.0, STARTUP_TIMEOUT_S, daemon)
            start = first + warm_s
            end = start + window_s
            pause = threading.Event()
            while time.time() < end and daemon.alive():
                if time.time() >= start:
                    samples.append((time.time(), common.proc_sample(daemon.pid)))
                    cpu.append((time.time(), common.proc_cpu_s(daemon.pid)))
                pause.wait(min(1.0, max(0.01, end - time.time())))
            cpu.append((time.time(), common.proc_cpu_s(daemon.pid)))
        finally:
            counters = daemon.stop()
        frames = sub.frames_between(start, end)
        events, _ = sub.snapshot_counts()
    if daemon.exit_code != 0:
        log.warning("%s: daemon exited with %s\n%s", tag, daemon.exit_code, daemon.log_tail())
    used = [(t, c) for t, c in cpu if c is not None]
    rate = (used[-1][1] - used[0][1]) / (used[-1][0] - used[0][0]) if len(used) >= 2 else None
    return Session(frames, (start, end), samples, counters, daemon.exit_code, daemon.stop_s, events, rate)


def run_to_end(work: Path, tag: str, package: Path, streams: List[Dict[str, Any]], defaults: Dict[str, Any],
               timeout_s: float) -> Session:
    """Play non-looping files to their end, let the worker drain, stop; the counters are the result."""
    endpoint = common.free_endpoint()
    config = common.write_config(work / (tag + ".yaml"), package, endpoint, streams, defaults)
    names = {s["name"] for s in streams}
    with common.Subscriber(endpoint) as sub:
        daemon = common.DaemonProcess(config).start()
        start = time.time()
        try:
            drained = sub.wait_drained(names, timeout_s, daemon)
        finally:
            counters = daemon.stop()
        events, _ = sub.snapshot_counts()
    if not drained:
        log.warning("%s: streams did not all end within %.0f s", tag, timeout_s)
    return Session([], (start, time.time()), [], counters, daemon.exit_code, daemon.stop_s, events)


def rep_pair(rep: int, engine: Any, frames: List[Any], setup: "Setup", plan: Plan,
             t_inf: Optional[float]) -> Dict[str, Any]:
    """One model-only measurement and one daemon measurement, in alternating order across reps."""
    out: Dict[str, Any] = {"rep": rep, "load_before": list(os.getloadavg())}

    def measure_model() -> None:
        times, cpu = model_only(engine, frames, setup.tasks, plan.model_only_s, plan.min_frames)
        out["model_only_s"] = times
        out["model_only_fps"] = len(times) / sum(times)
        out["model_only_cpu_s_per_frame"] = cpu

    def daemon_window(infer_s: float, package: Path, tag: str) -> Session:
        every = max(0.04, infer_s / 2.0)  # each stream alone offers twice what the worker can do
        streams = [common.stream_entry("cam%d" % i, setup.moving, setup.prompts, setup.tasks, loop=True)
                   for i in range(STREAMS)]
        defaults = {"sample_every_s": round(every, 3), "max_frame_age_s": MAX_FRAME_AGE_S}
        # 1.5: the daemon's inference is slower than the bare loop's while streams decode.
        window = min(4 * plan.window_s, max(plan.window_s, 1.5 * plan.min_frames * infer_s))
        out["sample_every_s"] = defaults["sample_every_s"]
        out["window_s"] = window
        return run_window(setup.work, "%s-%d" % (tag, rep), package, streams, defaults, plan.warm_s, window)

    def measure_int8(infer_s: float) -> None:
        """The same window with the int8 package (3 streams at twice fp32's rate each: saturated too)."""
        session = daemon_window(infer_s, setup.int8_package, "pipeline-int8")
        out["int8_daemon_fps"] = session.fps()
        out["int8_counters"] = session.counters
        out["int8_accounted"] = common.accounted(session.counters)

    def measure_daemon(infer_s: float) -> None:
        session = daemon_window(infer_s, setup.package, "pipeline")
        out["daemon_fps"] = session.fps()
        out["daemon_cpu_s_per_s"] = session.cpu_s_per_s
        if session.cpu_s_per_s is not None and out["daemon_fps"]:
            out["daemon_cpu_s_per_frame"] = session.cpu_s_per_s / out["daemon_fps"]
        out["daemon_frames"] = len(session.frames)
        out["counters"] = session.counters
        out["accounted"] = common.accounted(session.counters)
        out["exit_code"] = session.exit_code

    if rep % 2 == 0 or t_inf is None:
        measure_model()
        infer_s = statistics.median(out["model_only_s"]) if t_inf is None else t_inf
        measure_daemon(infer_s)
        if setup.int8_package:
            measure_int8(infer_s)
    else:
        if setup.int8_package:
            measure_int8(t_inf)
        measure_daemon(t_inf)
        measure_model()
    fps, base = out.get("daemon_fps"), out["model_only_fps"]
    out["ratio"] = fps / base if fps else None
    if setup.int8_package:
        out["int8_over_fp32"] = out["int8_daemon_fps"] / fps if fps and out.get("int8_daemon_fps") else None
    out["load_after"] = list(os.getloadavg())
    return out


@dataclass(frozen=True)
class Setup:
    work: Path
    package: Path
    tasks: Tuple[str, ...]
    moving: Path
    prompts: Tuple[str, ...]
    size: Tuple[int, int]
    int8_package: Optional[Path] = None


def scene_run(setup: Setup, plan: Plan, t_inf: float) -> Dict[str, Any]:
    """A moving and a static clip of the same length in one daemon, played once, gate at its defaults.

    Sampled a little slower than the worker, so the moving count measures the gate rather than the
    model; clips shorter than max_skip_s (30 s), whose forced re-inference would otherwise be counted;
    max_frame_age_s raised above the inference time, so the static stream's one gated frame is not
    lost as `too_old` behind a moving frame (that loss is a daemon issue of its own, reported as
    `static_lost_after_gate`). `gate_ratio` (frames let through) does not depend on the worker."""
    every = max(0.5, 1.1 * t_inf)
    length = min(SCENE_MAX_S, max(LOOP_CLIP_S, 12 * every))
    moving = (setup.moving if length == LOOP_CLIP_S
              else common.make_clip(setup.work / "moving-scene.mp4", length, size=setup.size))
    static = common.make_clip(setup.work / "static.mp4", length, moving=False, size=setup.size)
    streams = [common.stream_entry("moving", moving, setup.prompts, setup.tasks, loop=False),
               common.stream_entry("static", static, setup.prompts, setup.tasks, loop=False)]
    defaults = {"sample_every_s": round(every, 3), "max_frame_age_s": round(max(MAX_FRAME_AGE_S, 2.5 * t_inf), 3)}
    session = run_to_end(setup.work, "scene", setup.package, streams, defaults, timeout_s=length + STARTUP_TIMEOUT_S)
    counters = session.counters
    moving_n, static_n = int(counters["moving"]["inferred"]), int(counters["static"]["inferred"])
    passed = {name: int(c["sampled"]) - int(c["dropped"]["unchanged"]) for name, c in counters.items()}
    return {
        "clip_s": length, "sample_every_s": defaults["sample_every_s"],
        "max_frame_age_s": defaults["max_frame_age_s"],
        "moving_inferred": moving_n, "static_inferred": static_n,
        "moving_sample_points": int((length - 1e-6) / every) + 1,
        "ratio": moving_n / static_n if static_n else None,
        "gate_passed": passed,
        "gate_ratio": passed["moving"] / passed["static"] if passed["static"] else None,
        "static_lost_after_gate": passed["static"] - static_n,
        "counters": counters, "accounted": common.accounted(counters),
        "exit_code": session.exit_code,
    }


def overload_run(setup: Setup, plan: Plan, t_inf: float) -> Dict[str, Any]:
    """4 looping streams, each sampled at the worker's model-only rate: 4x what it can do."""
    every = max(0.04, t_inf)
    # Enough inferences in the window for a p95 (daemon inference ~2x slower here), within 3x the plan's.
    window = min(3 * plan.overload_s, max(plan.overload_s, 3 * plan.min_frames * t_inf))
    streams = [common.stream_entry("load%d" % i, setup.moving, setup.prompts, setup.tasks, loop=True)
               for i in range(OVERLOAD_STREAMS)]
    defaults = {"sample_every_s": round(every, 3), "max_frame_age_s": MAX_FRAME_AGE_S}
    session = run_window(setup.work, "overload", setup.package, streams, defaults,
                         plan.overload_warm_s, window)
    latencies = [received - captured for received, captured, _, _ in session.frames]
    publisher = [ms / 1000.0 for _, _, ms, _ in session.frames if ms == ms]
    completions = sorted(f[0] for f in session.frames)
    gaps = [b - a for a, b in zip(completions, completions[1:])]
    rss = [s["rss_mb"] for _, s in session.samples if s]
    rss_t = [t for t, s in session.samples if s]
    in_60 = [r for t, r in zip(rss_t, rss) if t - rss_t[0] <= 60.0] if rss else []
    bound = MAX_FRAME_AGE_S + t_inf
    p95 = common.percentile(latencies, 95)
    return {
        "window_s": window, "sample_every_s": defaults["sample_every_s"],
        "offered_over_capacity": OVERLOAD_STREAMS * t_inf / every,
        "frames": len(latencies), "daemon_fps": session.fps(),
        "p50_latency_s": common.percentile(latencies, 50), "p95_latency_s": p95,
        "max_latency_s": max(latencies) if latencies else None,
        "publisher_p95_latency_s": common.percentile(publisher, 95),
        "daemon_inference_s": statistics.median(gaps) if gaps else None,
        "bound_s": bound, "p95_over_bound": p95 / bound if p95 is not None else None,
        "p95_over_daemon_bound": (p95 / (MAX_FRAME_AGE_S + statistics.median(gaps))
                                  if p95 is not None and gaps else None),
        "rss_mb": rss, "rss_growth_mb": in_60[-1] - in_60[0] if len(in_60) >= 2 else None,
        "rss_growth_span_s": min(60.0, rss_t[-1] - rss_t[0]) if len(rss_t) >= 2 else None,
        "rss_growth_whole_window_mb": rss[-1] - rss[0] if len(rss) >= 2 else None,
        "rss_slope_mb_per_min": slope_per_min(rss_t, rss),
        "max_fds": max((s["fds"] for _, s in session.samples if s), default=None),
        "max_threads": max((s["threads"] for _, s in session.samples if s), default=None),
        "counters": session.counters, "accounted": common.accounted(session.counters),
        "events": session.events, "exit_code": session.exit_code, "stop_s": session.stop_s,
    }


def slope_per_min(times: List[float], values: List[float]) -> Optional[float]:
    if len(values) < 3:
        return None
    import numpy as np

    return float(np.polyfit(np.array(times) - times[0], np.array(values), 1)[0] * 60.0)


# -- report ---------------------------------------------------------------------------------------
def figures_of(reps: List[Dict[str, Any]], scene: Dict[str, Any], overload: Dict[str, Any]) -> Dict[str, Any]:
    ratios = [r["ratio"] for r in reps if r.get("ratio")]
    accounted = [ok for run in reps + [scene, overload] for ok in run["accounted"].values()]
    accounted += [ok for r in reps for ok in r.get("int8_accounted", {}).values()]
    int8 = [r["int8_over_fp32"] for r in reps if r.get("int8_over_fp32")]
    missing = {"%s/%s" % (tag, stream): n
               for tag, run in [("rep%d" % r["rep"], r) for r in reps] + [("scene", scene), ("overload", overload)]
               for stream, n in common.unaccounted(run["counters"]).items() if n}
    return {
        "pipeline_over_model_only": statistics.median(ratios) if ratios else None,
        "static_scene_inference_ratio": scene["ratio"],
        "overload_p95_latency_s": overload["p95_latency_s"],
        "overload_latency_bound_s": overload["bound_s"],
        "overload_p95_over_bound": overload["p95_over_bound"],
        "overload_rss_growth_mb": overload["rss_growth_mb"],
        "drops_accounted": bool(accounted) and all(accounted),
        "frames_unaccounted": missing,
        "int8_daemon_fps_over_fp32": statistics.median(int8) if int8 else None,
    }


def target_note(key: str, value: Any) -> str:
    if key not in TARGETS or value is None:
        return ""
    op, bound = TARGETS[key]
    met = {">=": value >= bound, "<=": value <= bound, "<": value < bound, "==": value == bound}[op]
    return "  (target %s %s: %s)" % (op, bound, "ok" if met else "MISSED")


def fmt(value: Any, pattern: str = "%.3f") -> str:
    if value is None:
        return "-"
    return str(value) if isinstance(value, bool) else pattern % value


def print_report(info: Dict[str, Any], doc: Dict[str, Any], quick: bool) -> None:
    print("machine: %d cores, %s; python %s, onnxruntime %s, opencv %s, pyzmq %s, numpy %s" % (
        info["cores"], info["cpu"], info["python"], info["onnxruntime"], info["opencv"], info["pyzmq"],
        info["numpy"]))
    print("model: %s (tasks %s, %d prompts); streams: %s H.264 25 fps; %s" % (
        doc["model"], "+".join(doc["tasks"]), N_PROMPTS, doc["stream_size"], common.load_note()))
    print("%-4s %14s %14s %8s %10s %15s %15s %16s" % (
        "rep", "model-only f/s", "daemon f/s", "ratio", "sample s", "model cpu-s/f", "daemon cpu-s/f", "load 1-min"))
    for r in doc["reps_detail"]:
        print("%-4d %14s %14s %8s %10s %15s %15s %16s" % (
            r["rep"], fmt(r["model_only_fps"]), fmt(r.get("daemon_fps")), fmt(r.get("ratio")),
            fmt(r.get("sample_every_s"), "%.3f"), fmt(r.get("model_only_cpu_s_per_frame")),
            fmt(r.get("daemon_cpu_s_per_frame")), "%.2f -> %.2f" % (r["load_before"][0], r["load_after"][0])))
    spread = doc["pipeline_over_model_only_spread"]
    print("pipeline/model-only over %d reps: median %s, min %s, max %s" % (
        spread["n"], fmt(spread["median"]), fmt(spread["min"]), fmt(spread["max"])))
    print("decoding %d streams alone (grab at real rate): %.3f core-s/s, %.0f%% of %d cores: "
          "the ratio cannot exceed about %.2f" % (STREAMS, doc["decode_cpu_core_s_per_s"],
                                                   100 * doc["decode_share_of_cores"], info["cores"],
                                                   1 - doc["decode_share_of_cores"]))
    for r in doc["reps_detail"]:
        if "other_cpu_s_per_frame" in r:
            print("  rep %d, CPU s per frame: daemon %.3f = model-only %.3f + decoding %.3f + the rest %+.3f" % (
                r["rep"], r["daemon_cpu_s_per_frame"], r["model_only_cpu_s_per_frame"],
                r["decode_cpu_s_per_frame"], r["other_cpu_s_per_frame"]))
    scene, over = doc["scene"], doc["overload"]
    print("scene gate: %.0f s clips, sample every %.2f s, max_frame_age_s %.1f: moving %d inferences (of %d "
          "sample points), static %d; the gate let through moving %d, static %d (gate ratio %s)" % (
              scene["clip_s"], scene["sample_every_s"], scene["max_frame_age_s"], scene["moving_inferred"],
              scene["moving_sample_points"], scene["static_inferred"], scene["gate_passed"]["moving"],
              scene["gate_passed"]["static"], fmt(scene["gate_ratio"], "%.1f")))
    if scene["static_lost_after_gate"]:
        print("  %d static frame(s) passed the gate but were dropped before inference: the gate's reference "
              "moved on anyway" % scene["static_lost_after_gate"])
    print("overload: %d streams, %.1fx capacity, %d frames in %.0f s%s; latency p50 %s s, p95 %s s, max %s s "
          "(publisher-side p95 %s s); bound = max_frame_age_s %.1f + model-only inference %.3f s = %.3f s; "
          "median interval between completions in the daemon (its inference time when saturated) %s s; "
          "p95 over max_frame_age_s + that: %s" % (
              OVERLOAD_STREAMS, over["offered_over_capacity"], over["frames"], over["window_s"],
              " (--quick)" if quick and over["window_s"] < 60 else "", fmt(over["p50_latency_s"]),
              fmt(over["p95_latency_s"]), fmt(over["max_latency_s"]), fmt(over["publisher_p95_latency_s"]),
              MAX_FRAME_AGE_S, doc["model_only_inference_s"], over["bound_s"], fmt(over["daemon_inference_s"]),
              fmt(over["p95_over_daemon_bound"])))
    print("overload RSS: %s MB at the window's start, +%s MB over its first %s s, %s MB at its end (%.0f s; "
          "fit %s MB/min); max fds %s, threads %s" % (
              fmt(over["rss_mb"][0] if over["rss_mb"] else None, "%.1f"), fmt(over["rss_growth_mb"], "%.1f"),
              fmt(over["rss_growth_span_s"], "%.0f"), fmt(over["rss_mb"][-1] if over["rss_mb"] else None, "%.1f"),
              over["window_s"], fmt(over["rss_slope_mb_per_min"], "%.2f"), fmt(over["max_fds"], "%.0f"),
              fmt(over["max_threads"], "%.0f")))
    if doc["frames_unaccounted"]:
        print("decoded frames neither inferred, failed nor dropped (run/stream: count): %s" % ", ".join(
            "%s: %d" % item for item in sorted(doc["frames_unaccounted"].items())))
    for r in doc["reps_detail"]:
        if "int8_daemon_fps" in r:
            print("  rep %d, daemon f/s: int8 package %s, fp32 %s (%s)" % (
                r["rep"], fmt(r["int8_daemon_fps"]), fmt(r.get("daemon_fps")), fmt(r.get("int8_over_fp32"))))
    for key in ("pipeline_over_model_only", "static_scene_inference_ratio", "overload_p95_latency_s",
                "overload_p95_over_bound", "overload_rss_growth_mb", "drops_accounted", "int8_daemon_fps_over_fp32"):
        print("%-30s %s%s" % (key, fmt(doc[key]), target_note(key, doc[key])))


# -- main -----------------------------------------------------------------------------------------
def frame_size(text: str) -> Tuple[int, int]:
    """'640x360' -> (640, 360); H.264 in yuv420p wants even sides."""
    width, _, height = text.lower().partition("x")
    if not (width.isdigit() and height.isdigit() and int(width) % 2 == 0 and int(height) % 2 == 0
            and 16 <= int(width) <= 4096 and 16 <= int(height) <= 4096):
        raise argparse.ArgumentTypeError("%r is not WxH with even sides from 16 to 4096" % text)
    return int(width), int(height)


def parse_args(argv: Optional[List[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", metavar="OUT", required=True, help="write the figures and details here")
    parser.add_argument("--quick", action="store_true", help="2 reps, short windows (about 3 minutes)")
    parser.add_argument("--reps", type=int, help="model-only/daemon pairs (default 3, --quick 2)")
    parser.add_argument("--tiny", action="store_true", help="tests/models.py's tiny package (smoke run)")
    parser.add_argument("--tasks", default="match", help="comma list; match is always included (default match)")
    parser.add_argument("--package", metavar="DIR", help="use this model package instead of exporting one")
    parser.add_argument("--size", type=frame_size, default=(640, 360),
                        help="clip size WxH (default 640x360, a camera substream; 1280x720 shows decoding cost)")
    parser.add_argument("--keep", metavar="DIR", help="work in DIR and keep it (package, clips, configs, logs)")
    parser.add_argument("--int8", action="store_true",
                        help="also run each rep's daemon window on an int8 copy of the package (blipd quantize)")
    return parser.parse_args(argv)


def run(args: argparse.Namespace, work: Path) -> Dict[str, Any]:
    tasks = tuple(sorted(set(t.strip() for t in args.tasks.split(",") if t.strip()) | {"match"}))
    plan = QUICK if args.quick else FULL
    if args.reps:
        plan = dataclasses.replace(plan, reps=args.reps)
    load_start = list(os.getloadavg())
    package = build_package(work, args, tasks)
    moving = common.make_clip(work / "moving.mp4", LOOP_CLIP_S, size=args.size)
    int8_package = None
    if args.int8:
        int8_package, quantize_s, _ = make_int8(work, package, 0)
        log.info("int8 package %s ready%s", int8_package, "" if quantize_s is None else " in %.0f s" % quantize_s)
    setup = Setup(work, package, tasks, moving, tuple(PROMPTS[:N_PROMPTS]), args.size, int8_package)
    decode = common.decode_cpu(moving, STREAMS, plan.decode_s)
    engine = make_engine(package, tasks)
    frames = common.decode_frames(moving, 8)
    reps: List[Dict[str, Any]] = []
    t_inf: Optional[float] = None
    for rep in range(plan.reps):
        reps.append(rep_pair(rep, engine, frames, setup, plan, t_inf))
        t_inf = statistics.median([t for r in reps for t in r["model_only_s"]])
        log.info("rep %d: ratio %s", rep, fmt(reps[-1].get("ratio")))
    assert t_inf is not None
    engine.close()
    for r in reps:  # daemon CPU per frame = model + decode + the rest of the daemon path
        if r.get("daemon_cpu_s_per_frame") is not None:
            r["decode_cpu_s_per_frame"] = decode / r["daemon_fps"]
            r["other_cpu_s_per_frame"] = (r["daemon_cpu_s_per_frame"] - r["model_only_cpu_s_per_frame"]
                                          - r["decode_cpu_s_per_frame"])
    scene = scene_run(setup, plan, t_inf)
    overload = overload_run(setup, plan, t_inf)
    doc = figures_of(reps, scene, overload)
    doc.update(
        pipeline_over_model_only_spread=common.spread([r["ratio"] for r in reps if r.get("ratio")]),
        model="tiny" if args.tiny else ("package " + str(package) if args.package else "BLIP-base-sized, random"),
        tasks=list(tasks), prompts=N_PROMPTS, streams=STREAMS, stream_size="%dx%d" % args.size,
        reps=plan.reps, quick=bool(args.quick),
        plan=plan.__dict__, model_only_inference_s=t_inf,
        decode_cpu_core_s_per_s=decode, decode_share_of_cores=decode / float(os.cpu_count() or 1),
        other_cpu_s_per_frame=common.spread([r["other_cpu_s_per_frame"] for r in reps if "other_cpu_s_per_frame" in r]),
        max_frame_age_s=MAX_FRAME_AGE_S,
        targets={k: "%s %s" % v for k, v in TARGETS.items()},
        load_start=load_start, load_end=list(os.getloadavg()),
        reps_detail=reps, scene=scene, overload=overload,
    )
    return doc


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    started = time.monotonic()
    work = common.temp_dir("blip-pipeline-", args.keep)
    try:
        doc = run(args, work)
    finally:
        if not args.keep:
            shutil.rmtree(str(work), ignore_errors=True)
    info = common.machine_info()
    doc["machine"] = info
    doc["elapsed_s"] = time.monotonic() - started
    Path(args.json).write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    print_report(info, doc, bool(args.quick))
    print("elapsed %.0f s; figures and details in %s" % (doc["elapsed_s"], args.json))
    return 0


if __name__ == "__main__":
    sys.exit(main())
