"""Model-side speed of blipd's BLIP tasks against transformers, measured in one run on this machine.

BLIP-base-sized random checkpoints (transformers' default configs; speed does not depend on the
weights) are exported once into a temporary package, then each task is timed on both sides:

  caption   transformers `generate` (eager, KV cache) vs our Captioner; 20 tokens forced on both
  match     our Matcher with 1 and with 10 prompts, vs transformers' ITM model looped over 10 prompts
  answer    transformers `generate` vs our Answerer; the same forced answer length on both
  vision    our exported ViT in its three attention forms (export --vision-attention hf | sdpa |
            fused), each against the machine's matmul ceiling in the same loop
  int8      an int8 copy made by `blipd quantize` (synthetic calibration frames): its vision graph,
            caption (20 tokens) and 10-prompt match against fp32 and transformers, and its
            embeddings' cosine to fp32's
  ceiling   the fp32 vision graph's GFLOP/s (FLOPs counted from the graph) over a large fp32
            MatMul's in this process and thread count; over its own weight GEMMs' run alone in one
            graph (same shapes: the graph's practical limit); and where its time goes by op type

Usage: python bench/blip_tasks.py --json OUT [--reps N] [--quick] [--keep DIR]
Figures are medians of N repetitions (after one warm-up), with min and max; ratios compare
medians measured in this process, so machine speed cancels out.
"""
import argparse
import json
import logging
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

log = logging.getLogger("bench.blip_tasks")

TARGETS = {
    "caption_speedup_vs_transformers": (">=", 1.5),
    "itm10_over_itm1": ("<=", 2.0),
    "itm10_speedup_vs_naive": (">=", 5.0),
    "answer_speedup_vs_transformers": (">=", 1.3),
    "int8_vision_speedup_vs_fp32": (">=", 2.0),
    "int8_caption_speedup_vs_transformers": (">=", 2.5),
    "int8_embedding_cosine": (">=", 0.99),
    "vision_fraction_of_ceiling": (">=", 0.85),
}
COSINE_FRAMES = 8
CAPTION_TOKENS = 20  # max_length = min_length, prompt included (transformers' convention)
ANSWER_TOKENS = 5  # generated answer tokens, bos excluded
PROMPTS = [
    "a person standing at the gate",
    "a dog",
    "a red car parked on the street",
    "blue sky",
    "the door is open",
    "two people walking next to a white bus",
    "a cat sitting on a black car",
    "an empty road",
    "a man with a yellow bag near the house",
    "trees",
]
QUESTION = "what color is the car?"
WORDS = (
    "a an the of on in at with and is are what where how many color picture photo image person man woman "
    "people dog cat car bus street road gate door tree trees house sky red green blue yellow black white two "
    "open closed standing sitting walking parked next to near there yes no empty bag"
).split()


def bert_like_tokenizer():
    """A 30524-token BertTokenizerFast laid out like bert-base-uncased + [DEC] + [ENC] (no hub access)."""
    from transformers import BertTokenizerFast

    tokens = ["[PAD]"] + ["[unused%d]" % i for i in range(99)] + ["[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tokens += [w for w in WORDS if w not in tokens]
    tokens += ["tok%05d" % i for i in range(30522 - len(tokens))]
    tokenizer = BertTokenizerFast(vocab={t: i for i, t in enumerate(tokens)})
    tokenizer.add_special_tokens({"bos_token": "[DEC]", "additional_special_tokens": ["[ENC]"]})
    assert len(tokenizer) == 30524 and tokenizer.bos_token_id == 30522 and tokenizer.sep_token_id == 102
    return tokenizer


def make_base_checkpoints(root: Path) -> Dict[str, Path]:
    """Random BLIP-base checkpoints (transformers defaults; ViT init range 0.02 instead of 1e-10)."""
    import torch
    import transformers

    classes = {
        "caption": "BlipForConditionalGeneration",
        "match": "BlipForImageTextRetrieval",
        "answer": "BlipForQuestionAnswering",
    }
    tokenizer = bert_like_tokenizer()
    config = transformers.BlipConfig(
        text_config={"sep_token_id": 102, "eos_token_id": 102}, vision_config={"initializer_range": 0.02}
    )
    folders = {}
    for seed, (task, name) in enumerate(classes.items()):
        start = time.monotonic()
        torch.manual_seed(seed)
        model = getattr(transformers, name)(config).eval()
        folders[task] = root / ("hf-" + task)
        model.save_pretrained(str(folders[task]))
        tokenizer.save_pretrained(str(folders[task]))
        del model
        log.info("made %s checkpoint in %.1f s", task, time.monotonic() - start)
    return folders


def measure(fns: Dict[str, Callable[[], Any]], reps: int) -> Dict[str, List[float]]:
    """Seconds per call of each function: one warm-up call each, then `reps` rounds that call every
    function once in turn, so load from other processes hits the compared sides alike."""
    for fn in fns.values():
        fn()
    times: Dict[str, List[float]] = {name: [] for name in fns}
    for _ in range(reps):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return times


def summary(times: List[float]) -> Dict[str, float]:
    return {
        "median_ms": 1000 * statistics.median(times),
        "min_ms": 1000 * min(times),
        "max_ms": 1000 * max(times),
    }


def bench_caption(pkg: Any, pkg8: Any, runtime: Any, folder: Path, frame: np.ndarray, reps: int) -> Dict[str, Any]:
    import torch
    import transformers

    from blip.caption import Captioner

    forced = {"max_length": CAPTION_TOKENS, "min_length": CAPTION_TOKENS}
    ours = Captioner(pkg, runtime, settings_override=forced)
    ours8 = Captioner(pkg8, runtime, settings_override=forced)
    model = transformers.BlipForConditionalGeneration.from_pretrained(str(folder)).eval()
    tokenizer = transformers.BertTokenizerFast.from_pretrained(str(folder))
    prompt = tokenizer(ours.prompt, return_tensors="pt").input_ids
    pixels = torch.from_numpy(ours_pixels(pkg, "caption", frame))

    def hf() -> List[int]:
        out = model.generate(pixel_values=pixels, input_ids=prompt.clone(), do_sample=False, num_beams=1, **forced)
        return out[0, prompt.shape[1] - 1:].tolist()

    same = hf() == ours.caption_ids(frame)
    result: Dict[str, Any] = measure(
        {"transformers": hf, "ours": lambda: ours.caption_ids(frame), "ours_int8": lambda: ours8.caption_ids(frame)},
        reps)
    result["tokens_identical"] = same
    result["int8_tokens_identical"] = ours8.caption_ids(frame) == ours.caption_ids(frame)
    del model
    return result


def ours_pixels(pkg: Any, task: str, frame: np.ndarray) -> np.ndarray:
    """The pixel values our runtime makes; transformers gets the same ones."""
    from blip.preprocess import preprocess

    pp = pkg.preprocess
    return preprocess(frame, pkg.task(task).image_size, pp.mean, pp.std, pp.interpolation)


def bench_match(pkg: Any, pkg8: Any, runtime: Any, folder: Path, frame: np.ndarray, reps: int) -> Dict[str, Any]:
    import torch
    import transformers

    from blip.match import Matcher

    ours = Matcher(pkg, runtime)
    ours8 = Matcher(pkg8, runtime)
    model = transformers.BlipForImageTextRetrieval.from_pretrained(str(folder)).eval()
    tokenizer = transformers.BertTokenizerFast.from_pretrained(str(folder))
    encoded = [tokenizer(p, return_tensors="pt") for p in PROMPTS]
    pixels = torch.from_numpy(ours_pixels(pkg, "match", frame))
    ten = {"p%d" % i: p for i, p in enumerate(PROMPTS)}

    def naive() -> List[float]:
        """The seed's design: the whole ITM model (ViT included) once per prompt."""
        scores = []
        with torch.no_grad():
            for enc in encoded:
                logits = model(
                    input_ids=enc.input_ids, attention_mask=enc.attention_mask, pixel_values=pixels
                ).itm_score
                scores.append(float(torch.softmax(logits, dim=-1)[0, 1]))
        return scores

    diff = float(np.max(np.abs(np.array(naive()) - np.array(list(ours.scores(frame, ten).values())))))
    result: Dict[str, Any] = measure(
        {
            "ours_1": lambda: ours.scores(frame, {"p0": PROMPTS[0]}),
            "ours_10": lambda: ours.scores(frame, ten),
            "ours_int8_10": lambda: ours8.scores(frame, ten),
            "naive_10": naive,
        },
        reps,
    )
    result["max_score_diff"] = diff
    int8_scores = np.array(list(ours8.scores(frame, ten).values()))
    result["int8_max_score_diff"] = float(np.max(np.abs(int8_scores - np.array(list(ours.scores(frame, ten).values())))))
    del model
    return result


def bench_answer(pkg: Any, runtime: Any, folder: Path, frame: np.ndarray, reps: int) -> Dict[str, Any]:
    import torch
    import transformers

    from blip.answer import Answerer

    forced = {"max_length": ANSWER_TOKENS + 1, "min_length": ANSWER_TOKENS + 1}
    ours = Answerer(pkg, runtime, settings_override=forced)
    model = transformers.BlipForQuestionAnswering.from_pretrained(str(folder)).eval()
    tokenizer = transformers.BertTokenizerFast.from_pretrained(str(folder))
    enc = tokenizer(QUESTION, return_tensors="pt")
    pixels = torch.from_numpy(ours_pixels(pkg, "answer", frame))

    def hf() -> List[int]:
        out = model.generate(
            input_ids=enc.input_ids, attention_mask=enc.attention_mask, pixel_values=pixels,
            do_sample=False, num_beams=1, **forced
        )
        return out[0, 1:].tolist()

    same = hf() == ours.answer_ids(frame, {"q": QUESTION})["q"]
    result: Dict[str, Any] = measure(
        {"transformers": hf, "ours": lambda: ours.answer_ids(frame, {"q": QUESTION})}, reps
    )
    result["tokens_identical"] = same
    del model
    return result


def bench_vision_attention(folder: Path, work: Path, reps: int, threads: int) -> Dict[str, Any]:
    """Export the caption ViT in each attention form and time them in ONNX Runtime, interleaved
    with the matmul ceiling; every form does the same FLOPs (counted on the hf graph)."""
    import torch
    import transformers
    import vision_ceiling

    from blip.export.modules import VisionEncoder
    from blip.export.onnx_export import export_graph, ort_session
    from blip.graphs import VISION_ATTENTION_FORMS

    model = transformers.BlipForConditionalGeneration.from_pretrained(str(folder)).eval()
    size = model.config.vision_config.image_size
    pixels = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(0))
    sessions = {}
    for form in VISION_ATTENTION_FORMS:
        path = work / ("vision-%s.onnx" % form)
        export_graph(VisionEncoder(model.vision_model, form).eval(), "vision", {"pixel_values": pixels}, path)
        sessions[form] = ort_session(path, threads=threads or None)
    del model
    feeds = {"pixel_values": pixels.numpy()}
    matmul_flops, matmuls = vision_ceiling.matmul_runners(threads or None)
    runs = dict({form: (lambda s=s: s.run(None, feeds)) for form, s in sessions.items()}, **matmuls)
    result: Dict[str, Any] = measure(runs, reps)
    flops = vision_ceiling.graph_flops(str(work / "vision-hf.onnx"), feeds)
    result["fraction_of_ceiling"] = {
        form: vision_ceiling.vision_fraction(flops, matmul_flops, dict(result, fp32=result[form]))["vision_fraction_of_ceiling"]
        for form in VISION_ATTENTION_FORMS}
    return result


def bench_int8_vision(pkg: Any, pkg8: Any, runtime: Any, reps: int, threads: int) -> Dict[str, Any]:
    """fp32 vs int8 caption vision graph on one frame; the int8 embeddings' cosine to fp32's over
    COSINE_FRAMES frames; and the fp32 graph against the machine's matmul ceiling."""
    import vision_ceiling

    from blip.export.quantize import cosine, synthetic_pixels

    size = pkg.task("caption").image_size
    fp32 = runtime.load(pkg.task("caption").graphs["vision"].path)
    int8 = runtime.load(pkg8.task("caption").graphs["vision"].path)
    frames = synthetic_pixels(pkg, size, COSINE_FRAMES, seed=7)
    cosines = [cosine(fp32.run({"pixel_values": f[None]})["image_embeds"],
                      int8.run({"pixel_values": f[None]})["image_embeds"]) for f in frames]
    feeds = {"pixel_values": frames[:1]}
    matmul_flops, matmuls = vision_ceiling.matmul_runners(threads or None)
    gemm_flops, gemms = vision_ceiling.weight_gemms_runner(fp32.path, feeds, threads or None)
    result: Dict[str, Any] = measure(
        dict({"fp32": lambda: fp32.run(feeds), "int8": lambda: int8.run(feeds), "weight_gemms": gemms}, **matmuls),
        reps + 2)
    result["cosines"] = cosines
    result["precision"] = pkg8.task("caption").graphs["vision"].precision
    flops = vision_ceiling.graph_flops(pkg.task("caption").graphs["vision"].path, feeds)
    result["ceiling"] = vision_ceiling.vision_fraction(flops, matmul_flops, result)
    result["ceiling"]["weight_gemms_gflops"] = gemm_flops / statistics.median(result["weight_gemms"]) / 1e9
    result["ceiling"]["vision_fraction_of_weight_gemms"] = (result["ceiling"]["vision_gflops"]
                                                            / result["ceiling"]["weight_gemms_gflops"])
    result["fp32_profile_ms"] = vision_ceiling.op_profile(fp32.path, feeds, threads or None)
    return result


def make_int8(work: Path, pkg_dir: Path, threads: int) -> Tuple[Path, Optional[float], List[str]]:
    """`blipd quantize`'s library call on the fp32 package (reused when `work` already has it)."""
    from blip.export.quantize import Bars, quantize_package

    out = work / "package-int8"
    if (out / "manifest.yaml").is_file():
        return out, None, []
    start = time.monotonic()
    # Random weights leave the decoders' top logits nearly tied, so any rounding changes greedy
    # tokens: the token-agreement bar is off here (speed does not depend on the weights; the
    # bars are checked on the trained demo model, python -m blip.demo.evaluate).
    bars = Bars(argmax_min=0.0)
    log.info("int8 package with the greedy-token bar off (random weights: near-tied logits)")
    result = quantize_package(pkg_dir, out, calibration=None, threads=threads or None, command="bench/blip_tasks.py",
                              bars=bars)
    return out, time.monotonic() - start, result.table()


def machine() -> Dict[str, Any]:
    """Cores, CPU model and the package versions the figures depend on."""
    import onnxruntime
    import torch
    import transformers

    model = platform.processor() or "unknown"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            names = [line.split(":", 1)[1].strip() for line in handle if line.startswith("model name")]
        model = names[0] if names else model
    except OSError:
        pass
    return {
        "cores": os.cpu_count(),
        "cpu": model,
        "python": platform.python_version(),
        "torch": str(torch.__version__),
        "torch_threads": torch.get_num_threads(),
        "transformers": str(transformers.__version__),
        "onnxruntime": str(onnxruntime.__version__),
        "numpy": str(np.__version__),
        "cpu_flags": cpu_flags(),
    }


def cpu_flags() -> List[str]:
    from blip.export.quantize import cpu_flags as flags

    return flags()


def ratios(results: Dict[str, Any]) -> Dict[str, Any]:
    med = statistics.median
    cap, match, ans = results["caption"], results["match"], results["answer"]
    figures = {
        "caption_speedup_vs_transformers": med(cap["transformers"]) / med(cap["ours"]),
        "itm10_over_itm1": med(match["ours_10"]) / med(match["ours_1"]),
        "itm10_speedup_vs_naive": med(match["naive_10"]) / med(match["ours_10"]),
        "answer_speedup_vs_transformers": med(ans["transformers"]) / med(ans["ours"]),
        "tokens_identical": bool(cap["tokens_identical"] and ans["tokens_identical"]),
    }
    if "vision" in results:
        vision = results["vision"]
        for form in ("sdpa", "fused"):
            figures["vision_%s_speedup_vs_hf" % form] = med(vision["hf"]) / med(vision[form])
        figures["vision_fused_fraction_of_ceiling"] = vision["fraction_of_ceiling"]["fused"]
    int8 = results["int8_vision"]
    figures.update({
        "int8_vision_speedup_vs_fp32": med(int8["fp32"]) / med(int8["int8"]),
        "int8_caption_speedup_vs_transformers": med(cap["transformers"]) / med(cap["ours_int8"]),
        "int8_caption_speedup_vs_fp32": med(cap["ours"]) / med(cap["ours_int8"]),
        "int8_itm10_speedup_vs_fp32": med(match["ours_10"]) / med(match["ours_int8_10"]),
        "int8_embedding_cosine": float(np.mean(int8["cosines"])),
        "int8_caption_tokens_identical": bool(cap["int8_tokens_identical"]),
        "vision_fraction_of_ceiling": int8["ceiling"]["vision_fraction_of_ceiling"],
        "vision_fraction_of_weight_gemms": int8["ceiling"]["vision_fraction_of_weight_gemms"],
    })
    return figures


def print_report(info: Dict[str, Any], results: Dict[str, Any], figures: Dict[str, Any], reps: int) -> None:
    print("machine: %d cores, %s; python %s, torch %s (%d threads), transformers %s, onnxruntime %s (%s threads)" % (
        info["cores"], info["cpu"], info["python"], info["torch"], info["torch_threads"],
        info["transformers"], info["onnxruntime"], info["onnxruntime_threads"]))
    print("load average at the end: %s" % " ".join("%.2f" % x for x in os.getloadavg()))
    print("%-44s %10s %10s %10s   (%d reps)" % ("what", "median ms", "min ms", "max ms", reps))
    rows = [
        ("caption, transformers generate (%d tokens)" % CAPTION_TOKENS, results["caption"]["transformers"]),
        ("caption, ours", results["caption"]["ours"]),
        ("match, ours, 1 prompt", results["match"]["ours_1"]),
        ("match, ours, 10 prompts", results["match"]["ours_10"]),
        ("match, transformers looped over 10 prompts", results["match"]["naive_10"]),
        ("answer, transformers generate (%d tokens)" % ANSWER_TOKENS, results["answer"]["transformers"]),
        ("answer, ours", results["answer"]["ours"]),
        ("caption, ours int8", results["caption"]["ours_int8"]),
        ("match, ours int8, 10 prompts", results["match"]["ours_int8_10"]),
        ("vision fp32 (caption graph)", results["int8_vision"]["fp32"]),
        ("vision int8 (%s)" % results["int8_vision"]["precision"], results["int8_vision"]["int8"]),
    ]
    if "vision" in results:
        rows += [("vision ONNX, attention %s" % form, results["vision"][form]) for form in ("hf", "sdpa", "fused")]
    for label, times in rows:
        s = summary(times)
        print("%-44s %10.0f %10.0f %10.0f" % (label, s["median_ms"], s["min_ms"], s["max_ms"]))
    ceiling = results["int8_vision"]["ceiling"]
    print("cpu flags: %s (VNNI: %s)" % (" ".join(info["cpu_flags"]) or "none",
                                        "yes" if any("vnni" in f for f in info["cpu_flags"]) else "no"))
    print("matmul ceiling %d^3 fp32: onnxruntime %.0f GFLOP/s, numpy %.0f GFLOP/s; fp32 vision %.1f GFLOP "
          "at %.0f GFLOP/s" % (vision_ceiling_n(), ceiling["onnxruntime_gflops"], ceiling["numpy_gflops"],
                               ceiling["vision_gflop"], ceiling["vision_gflops"]))
    print("the vision graph's weight GEMMs alone (same shapes, one graph): %.0f GFLOP/s" % ceiling["weight_gemms_gflops"])
    print("fp32 vision time by op (ms/run): " + ", ".join(
        "%s %.1f" % kv for kv in list(results["int8_vision"]["fp32_profile_ms"].items())[:8]))
    for line in results.get("int8_table") or []:
        print("quantize: " + line)
    for key, value in figures.items():
        shown = str(value) if isinstance(value, bool) else "%.3f" % value
        print("%-38s %s%s" % (key, shown, target_note(key, value)))


def vision_ceiling_n() -> int:
    import vision_ceiling

    return vision_ceiling.CEILING_N


def target_note(key: str, value: Any) -> str:
    """"  (target >= 1.5: ok)" for figures that have a target, "" otherwise."""
    if key not in TARGETS:
        return ""
    op, bound = TARGETS[key]
    met = value >= bound if op == ">=" else value <= bound
    return "  (target %s %.2f: %s)" % (op, bound, "ok" if met else "MISSED")


def parse_args(argv: Optional[List[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", metavar="OUT", required=True, help="write the figures and timings here")
    parser.add_argument("--reps", type=int, default=5, help="timed repetitions per measurement (default 5)")
    parser.add_argument("--quick", action="store_true", help="2 repetitions, no vision attention comparison")
    parser.add_argument(
        "--threads", type=int, default=0,
        help="intra-op threads for both torch and ONNX Runtime (default 0: each library's default, one per core)",
    )
    parser.add_argument(
        "--keep", metavar="DIR", help="build checkpoints and package in DIR and keep them (reused when there)"
    )
    return parser.parse_args(argv)


def run_all(work: Path, reps: int, quick: bool, threads: int) -> Dict[str, Any]:
    from blip.export.api import export_package
    from blip.package import ModelPackage
    from blip.runtime import create_runtime

    folders = {task: work / ("hf-" + task) for task in ("caption", "match", "answer")}
    export_s: Optional[float] = None
    if (work / "package" / "manifest.yaml").is_file():
        log.info("reusing checkpoints and package in %s", work)
    else:
        folders = make_base_checkpoints(work)
        start = time.monotonic()
        export_package(work / "package", name="blip-base-random", command="bench/blip_tasks.py", **folders)
        export_s = time.monotonic() - start
    pkg = ModelPackage.load(str(work / "package"))
    int8_dir, quantize_s, table = make_int8(work, work / "package", threads)
    pkg8 = ModelPackage.load(str(int8_dir))
    runtime = create_runtime("onnxruntime", device=None, threads=threads or None)
    frame = np.random.default_rng(0).integers(0, 256, (480, 640, 3), dtype=np.uint8)
    results: Dict[str, Any] = {"export_s": export_s, "quantize_s": quantize_s, "int8_table": table}
    results["caption"] = bench_caption(pkg, pkg8, runtime, folders["caption"], frame, reps)
    results["match"] = bench_match(pkg, pkg8, runtime, folders["match"], frame, reps)
    results["answer"] = bench_answer(pkg, runtime, folders["answer"], frame, reps)
    results["int8_vision"] = bench_int8_vision(pkg, pkg8, runtime, reps, threads)
    if not quick:
        results["vision"] = bench_vision_attention(folders["caption"], work, reps, threads)
    return results


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    import transformers

    transformers.logging.set_verbosity_error()
    reps = 2 if args.quick else max(1, args.reps)
    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="blip-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        if args.threads:
            import torch

            torch.set_num_threads(args.threads)
        results = run_all(work, reps, args.quick, args.threads)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    info = dict(machine(), onnxruntime_threads=args.threads or "default")
    figures = ratios(results)
    print_report(info, results, figures, reps)
    timings = {
        task: {k: summary(v) for k, v in body.items() if isinstance(v, list) and k != "cosines"}
        for task, body in results.items() if isinstance(body, dict)
    }
    doc = dict(figures, targets={k: "%s %s" % t for k, t in TARGETS.items()}, reps=reps, machine=info,
               timings=timings, export_s=results["export_s"],
               match_max_score_diff=results["match"]["max_score_diff"],
               int8_match_max_score_diff=results["match"]["int8_max_score_diff"],
               quantize_s=results["quantize_s"], quantize_table=results["int8_table"],
               vision_ceiling=results["int8_vision"]["ceiling"],
               vision_fp32_profile_ms=results["int8_vision"]["fp32_profile_ms"],
               caption_tokens=CAPTION_TOKENS, answer_tokens=ANSWER_TOKENS, load_average=list(os.getloadavg()))
    Path(args.json).write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
