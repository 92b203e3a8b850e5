"""`blipd doctor -c CONFIG [--image FILE] [--seconds N] [--reference DIR] --json OUT`: the
first-contact acceptance run of a box (docs/sophon.md).

One command that says whether every path the config uses works here, and writes the evidence:
preflight; every task of the package on the configured backend and, with `--reference`, on ONNX
Runtime CPU from an ONNX package of the same model (token ids and scores compared); N seconds of
each `decoder: sail` stream (frames, resolution, errors, end codes); the device's `preprocess: tpu`
pixels against CPU preprocessing of the same frames; the median of 10 calls per graph and per task.
A config without SOPHON parts (backend onnxruntime, no sail decoder) gets the same run of what it
has, and says that sail was not looked at. Exit 0: everything checked passed; 1: problems (listed
in the table and the JSON); 2: bad input (config, image, reference folder).
"""
import argparse
import datetime
import json
import os
import sys
from typing import Any, Dict, List, Mapping, Optional, TextIO, Tuple

HELP = "first-contact acceptance run: preflight, every task (vs ONNX Runtime CPU), sail decoding, timings -> JSON"
TIMING_RUNS = 10
SCORE_TOLERANCE = 0.02
"""Largest match-score difference to the ONNX reference still counted as the same model (F32)."""
PREPROCESS_MEAN_LIMIT = 0.05
"""Largest mean |device - CPU| pixel difference accepted (bilinear vs bicubic measures 0.004-0.013)."""
DEV_DIR = "/dev"
"""Where preflight looks for the SOPHON device nodes (tests point it at a folder of fake nodes)."""
DEFAULT_PROMPTS = {"doctor": "a photo of something"}
DEFAULT_QUESTIONS = {"doctor": "what is in the picture?"}


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-c", "--config", required=True, help="the daemon's YAML config")
    parser.add_argument("--image", default=None, help="a photo to run the tasks on (default: a drawn test picture)")
    parser.add_argument("--seconds", type=float, default=5.0, help="how long to decode each decoder: sail stream")
    parser.add_argument("--reference", default=None, metavar="DIR",
                        help="an ONNX package of the same model, run on ONNX Runtime CPU for comparison")
    parser.add_argument("--runs", type=int, default=TIMING_RUNS, help="calls per timing (median)")
    parser.add_argument("--json", required=True, metavar="OUT", help="write the evidence here")


def run(args: argparse.Namespace) -> int:
    from daemon.errors import ConfigError

    if args.seconds <= 0 or args.runs < 1:
        raise ConfigError("doctor: --seconds must be > 0 and --runs >= 1")
    folder = os.path.dirname(os.path.abspath(args.json))
    if not os.path.isdir(folder) or not os.access(folder, os.W_OK):  # before the run, not after it
        raise ConfigError("doctor: cannot write %s: no such folder or not writable" % args.json)
    report = run_doctor(args.config, image=args.image, seconds=args.seconds, reference=args.reference, runs=args.runs)
    try:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(report, fh, indent=2, sort_keys=False)
            fh.write("\n")
    except OSError as exc:  # e.g. a folder in its place: the table below still shows the run
        sys.stderr.write("blipd: cannot write %s: %s\n" % (args.json, (exc.strerror or type(exc).__name__).lower()))
        render(report, sys.stdout)
        return 1
    render(report, sys.stdout)
    sys.stdout.write("evidence written to %s\n" % args.json)
    return 1 if report["problems"] else 0


def _frame(image: Optional[str]) -> Tuple[Any, str]:
    """The picture the tasks run on: `--image` (ImageError, exit 2, when unreadable) or a drawn one."""
    import numpy as np

    if image:
        from blip.image import load_image

        frame = load_image(image)
        return frame, "%s (%dx%d)" % (image, frame.shape[1], frame.shape[0])
    from blip.image import import_cv2

    cv2 = import_cv2()
    frame = np.zeros((480, 640, 3), dtype=np.uint8)
    frame[:] = np.linspace(40, 200, 640, dtype=np.uint8)[None, :, None]
    cv2.circle(frame, (200, 240), 90, (40, 40, 220), -1)
    cv2.rectangle(frame, (380, 150), (560, 330), (200, 80, 30), -1)
    return frame, "drawn test picture 640x480 (a red circle and a blue square)"


def _texts(settings: Any) -> Tuple[Dict[str, str], Dict[str, str]]:
    prompts = {p.id: p.text for s in settings.streams for p in s.prompts}
    questions = {q.id: q.text for s in settings.streams for q in s.questions}
    return prompts or dict(DEFAULT_PROMPTS), questions or dict(DEFAULT_QUESTIONS)


def _preflight(settings: Any, package: Any, backend: str) -> Dict[str, Any]:
    from daemon.ops.preflight import failed, run_preflight

    sail_tasks = [spec for spec in package.tasks.values() if spec.backend == "sail"]
    bmodels = sorted({str(g.path) for spec in sail_tasks for g in spec.graphs.values()})
    chip = package.source.get("chip") if isinstance(getattr(package, "source", None), dict) else None
    findings = run_preflight(
        backend_needed=backend == "sail",
        bmodels=bmodels,
        device=settings.model.device,
        decoder_needed=any(s.decoder == "sail" for s in settings.streams),
        chips={path: chip for path in bmodels} if chip else None,
        workers=settings.model.workers,
        dev_dir=DEV_DIR,
    )
    return {"preflight_ok": not failed(findings),
            "preflight": [{"check": f.check, "level": f.level, "message": f.message, "fix": f.fix} for f in findings]}


def _sail_identity(device: int) -> Dict[str, Any]:
    """sail_version (release and build date) and chip, or the reason they are unknown."""
    from blip.errors import BackendError
    from blip.runtime.sail import import_sail, one_line, sail_build, sail_errors

    try:
        sail = import_sail("doctor")
    except BackendError as exc:
        return {"sail_version": None, "chip": None, "sail_error": str(exc).splitlines()[0]}
    found: Dict[str, Any] = {"sail_version": sail_build(sail).describe(), "chip": None}
    try:
        found["chip"] = str(sail.Handle(device).get_target())
    except sail_errors(sail) as exc:
        found["sail_error"] = "TPU %d: %s" % (device, one_line(exc))
    return found


def _runtime_factory(name: str, device: Optional[int], threads: Optional[int]) -> Any:
    def make() -> Any:
        from blip.runtime import create_runtime

        return create_runtime(name, device=device, threads=threads)

    return make


def _tasks(report: Dict[str, Any], package: Any, backend: str, settings: Any, frame: Any,
           reference: Optional[str], runs: int) -> None:
    """Fill tasks, graphs and reference; add a problem for every failure or mismatch."""
    from blip.package import ModelPackage
    from daemon.commands.doctor_runs import run_tasks

    prompts, questions = _texts(settings)
    model = settings.model
    ours = run_tasks(package, _runtime_factory(backend, model.device, model.threads), frame, prompts, questions, runs)
    theirs: Optional[Dict[str, Any]] = None
    if reference:
        ref_package = ModelPackage.load(reference)  # PackageError: exit 2, the folder is bad input
        theirs = run_tasks(ref_package, _runtime_factory("onnxruntime", None, model.threads), frame, prompts, questions, runs)
        report["reference"] = {"package": ref_package.name, "backend": "onnxruntime CPU",
                               "load_s": theirs.get("load_s"), "graphs": theirs["graphs"], "error": theirs.get("error")}
        if theirs.get("error"):
            report["problems"].append("reference %s: %s" % (reference, theirs["error"]))
    else:
        report["notes"].append("no --reference: outputs are not compared with ONNX Runtime CPU")
    report["backend"], report["load_s"], report["graphs"] = ours["backend"], ours.get("load_s"), ours["graphs"]
    if ours.get("error"):
        report["problems"].append("backend %s: %s" % (backend, ours["error"]))
    report["tasks"] = {task: _task_entry(report, task, ours, theirs) for task in sorted(package.tasks)}


def _task_entry(report: Dict[str, Any], task: str, ours: Mapping[str, Any], theirs: Optional[Mapping[str, Any]]) -> Dict[str, Any]:
    from daemon.commands.doctor_runs import compare

    key = "score_max_diff" if task == "match" else "tokens_identical"
    mine = ours["tasks"].get(task, {"error": ours.get("error", "not run")})
    entry: Dict[str, Any] = {"backend": ours["backend"], "median_ms": mine.get("median_ms"), key: None,
                             "output": mine.get("output")}
    if "error" in mine:
        entry["error"] = mine["error"]
        report["problems"].append("task %s on %s: %s" % (task, ours["backend"], mine["error"]))
    if theirs is None:
        return entry
    ref = theirs["tasks"].get(task, {"error": theirs.get("error") or "not in the reference package"})
    entry["reference"] = {"median_ms": ref.get("median_ms"), "output": ref.get("output"), "error": ref.get("error")}
    if "output" in mine and "output" in ref:
        entry.update(compare(task, mine["output"], ref["output"]))
        if entry.get("tokens_identical") is False:
            report["problems"].append("task %s: token ids differ from ONNX Runtime CPU" % task)
        if (entry.get("score_max_diff") or 0.0) > SCORE_TOLERANCE:
            report["problems"].append("task %s: scores differ from ONNX Runtime CPU by up to %.4f" % (task, entry["score_max_diff"]))
    return entry


def _decoders(report: Dict[str, Any], settings: Any, package: Any, seconds: float) -> None:
    """decoder (per `decoder: sail` stream) and the preprocess differences over them."""
    from daemon.commands.doctor_runs import decode_stream
    from daemon.pipeline.sources.base import DevicePreprocess

    pp = package.preprocess
    sizes = tuple(sorted({int(spec.image_size) for spec in package.tasks.values()}))
    plan = DevicePreprocess(sizes, tuple(pp.mean), tuple(pp.std), pp.interpolation)  # type: ignore[arg-type]
    report["decoder"] = {}
    for stream in settings.streams:
        if stream.decoder != "sail":
            continue
        got = decode_stream(stream.resolved(settings.defaults), settings.model.device, plan, seconds)
        report["decoder"][stream.name] = got
        for error in got["errors"]:
            report["problems"].append("decoder %s: %s" % (stream.name, error))
        if got["frames"] == 0 and not got["errors"]:
            report["problems"].append("decoder %s: no frame in %.1f s" % (stream.name, got["seconds"]))
        if got["pixels_missing"]:
            report["problems"].append("decoder %s: preprocess tpu gave no usable pixels on %d frame(s) (see the log)"
                                      % (stream.name, got["pixels_missing"]))
        if got.get("preprocess_mean_abs_diff", 0.0) > PREPROCESS_MEAN_LIMIT:
            report["problems"].append("decoder %s: device pixels differ from the CPU's by %.4f on average"
                                      % (stream.name, got["preprocess_mean_abs_diff"]))
    diffs = [d for d in report["decoder"].values() if "preprocess_max_abs_diff" in d]
    report["preprocess_max_abs_diff"] = max((d["preprocess_max_abs_diff"] for d in diffs), default=None)
    report["preprocess_mean_abs_diff"] = max((d["preprocess_mean_abs_diff"] for d in diffs), default=None)
    if not report["decoder"]:
        report["notes"].append("no decoder: sail stream: decoding and preprocess tpu not checked")


def run_doctor(config: str, image: Optional[str] = None, seconds: float = 5.0, reference: Optional[str] = None,
               runs: int = TIMING_RUNS) -> Dict[str, Any]:
    """The whole run; returns the JSON evidence. Config, image and reference errors raise (exit 2)."""
    from blip.runtime import resolve_backend
    from daemon.config.config import load_config
    from daemon.service import load_package

    settings = load_config(config)
    package = load_package(settings)
    frame, picture = _frame(image)
    backend = resolve_backend(settings.model.backend, package)
    report: Dict[str, Any] = {
        "blipd_doctor": 1,
        "time": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "config": str(config), "package": package.name, "image": picture, "problems": [], "notes": [],
    }
    report.update(_preflight(settings, package, backend))
    if not report["preflight_ok"]:
        report["problems"] += ["preflight: %s -> %s" % (f["message"], f["fix"]) for f in report["preflight"] if f["level"] == "error"]
    sail_parts = backend == "sail" or any(s.decoder == "sail" for s in settings.streams)
    report["sail_parts"] = sail_parts
    if sail_parts:
        report.update(_sail_identity(settings.model.device))
        if report.get("sail_error"):
            report["problems"].append("sail: %s" % report["sail_error"])
    else:
        report.update(sail_version=None, chip=None)
        report["notes"].append("no sail parts in this config (backend %s, no decoder: sail): sophon.sail not loaded" % backend)
    _tasks(report, package, backend, settings, frame, reference, runs)
    _decoders(report, settings, package, seconds)
    return report


def render(report: Mapping[str, Any], out: TextIO) -> None:
    """The readable table of a report."""
    w = out.write
    w("blipd doctor: %s, package %s, %s\n" % (report["config"], report["package"], report["image"]))
    w("sail        %s, chip %s\n" % (report.get("sail_version") or "-", report.get("chip") or "-"))
    for f in report["preflight"]:
        w("preflight   %-5s %-8s %s%s\n" % (f["level"], f["check"], f["message"], " -> " + f["fix"] if f["fix"] else ""))
    w("\n%-10s %-12s %10s %12s  %s\n" % ("task", "backend", "median ms", "ref ms", "same as ONNX Runtime CPU"))
    for task, entry in report.get("tasks", {}).items():
        ref = entry.get("reference") or {}
        if "error" in entry:
            check = "error: " + entry["error"]
        elif entry.get("score_max_diff") is not None:
            check = "score max diff %.5f" % entry["score_max_diff"]
        elif entry.get("tokens_identical") is not None:
            check = "token ids identical" if entry["tokens_identical"] else "token ids DIFFER"
        else:
            check = "-"
        w("%-10s %-12s %10s %12s  %s\n" % (task, entry["backend"], _ms(entry.get("median_ms")), _ms(ref.get("median_ms")), check))
    if report.get("graphs"):
        w("\n%-50s %10s\n" % ("graph", "median ms"))
        for label, value in report["graphs"].items():
            w("%-50s %10s\n" % (label, _ms(value) if not isinstance(value, dict) else "error: " + value["error"]))
    for name, got in report.get("decoder", {}).items():
        w("\ndecoder %s: %d frames in %.1f s, %sx%s, %d error(s)%s\n" % (
            name, got["frames"], got["seconds"], got["width"], got["height"], len(got["errors"]),
            ", end: " + got["end"] if got.get("end") else ""))
    if report.get("preprocess_max_abs_diff") is not None:
        w("preprocess tpu vs cpu: mean |diff| %.4f, max %.4f\n" % (report["preprocess_mean_abs_diff"], report["preprocess_max_abs_diff"]))
    for note in report["notes"]:
        w("note: %s\n" % note)
    problems: List[str] = report["problems"]
    w("\n%s\n" % ("OK: every check passed" if not problems else "%d problem(s):" % len(problems)))
    for problem in problems:
        w("  %s\n" % problem)


def _ms(value: Any) -> str:
    return "%.1f" % value if isinstance(value, (int, float)) else "-"
