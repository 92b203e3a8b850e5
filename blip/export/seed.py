"""Export for SOPHON: the seed layout (sophon-demo's five BLIP graphs) and static-shape split graphs.

Seed layout (reference/seed-blip.md §2, §6): graph names `blip_cap`, `blip_itm`, `blip_vqa_venc`,
`blip_vqa_tenc`, `blip_vqa_tdec`; their input names; one output named `output`; batch 1 and text
length 35, all shapes static (TPU-MLIR compiles static shapes); opset 13 as the seed. The greedy
loops of cap/tdec are unrolled inside the graph to max_length tokens, prompt included, with pad
after eos: what tracing the seed's `generate` produced. The graphs reuse the split exporter's
torch modules (blip/export/modules.py, checked against transformers), so ids and scores equal
transformers' greedy `generate` and ITM head. ONNX Runtime runs the written package as is (backend
onnxruntime); `compile_bmodel.sh` turns it into bmodels and `blipd package-seed` packages those.

Static split: TPU-MLIR needs every dim fixed, so `static_split_package` rewrites a split package's
graphs with P prompts, Q questions and the cache length fixed. The task classes then feed at most
P prompts / Q questions per call. After compiling, `bmodel_package` writes the sail manifest.

CLI: `python -m blip.export.seed static SRC OUT [--prompts P] [--questions Q]` and
`python -m blip.export.seed bmodels STATIC_PKG BMODEL_DIR`.
"""
import argparse
import logging
import shutil
import sys
import warnings
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Union

import numpy as np
import yaml

from blip.errors import ExportError
from blip.graphs import LAYOUT_SEED, LAYOUT_SPLIT, TASKS
from blip.seed import SEED_GRAPHS

log = logging.getLogger(__name__)

PathLike = Union[str, Path]
SEED_OPSET = 13
TEXT_LENGTH = 35
CAPTION_LENGTHS = (20, 5)  # max_length (prompt included), min_length
ANSWER_LENGTHS = (10, 1)  # max_length (bos included), min_length
TASK_ROLES = {"caption": ("cap",), "match": ("itm",), "answer": ("venc", "tenc", "tdec")}


def _modules() -> Any:
    from blip.export import modules

    return modules


def _greedy_class() -> Any:
    import torch

    class GreedyLoop(torch.nn.Module):
        """decoder_init, then the fixed-slot decoder step unrolled: tokens [1,max_length] int64.

        Semantics of transformers' greedy generate for one row: eos suppressed below min_length,
        pad after eos (generate stops there instead; the seed graph keeps its traced length).
        """

        def __init__(self, decoder: Any, prefix: Sequence[int], max_length: int, min_length: int, eos: int, pad: int) -> None:
            super().__init__()
            modules = _modules()
            self.init = modules.DecoderInit(decoder)
            self.step = modules.DecoderStep(decoder)
            self.prefix = [int(t) for t in prefix]
            self.max_length, self.min_length, self.eos, self.pad = max_length, min_length, eos, pad
            attn = decoder.bert.encoder.layer[0].attention.self
            self.heads = int(attn.num_attention_heads)
            self.head_dim = int(attn.attention_head_size)
            self.layers = len(decoder.bert.encoder.layer)

        def forward(self, encoder_states: Any) -> Any:
            cross = self.step.per_layer(self.init(encoder_states))
            mask = torch.ones(1, encoder_states.shape[1], dtype=torch.float32)  # all ones, as the seed
            self_kv = torch.zeros(self.layers, 2, 1, self.heads, self.max_length, self.head_dim)
            for pos, token in enumerate(self.prefix[:-1]):
                ids = torch.tensor([[token]], dtype=torch.int64)
                _, self_kv = self.step(ids, torch.tensor([pos], dtype=torch.int64), self_kv, mask, *cross)
            current = torch.tensor([[self.prefix[-1]]], dtype=torch.int64)
            finished = torch.zeros(1, 1, dtype=torch.bool)
            pieces = [torch.tensor([self.prefix], dtype=torch.int64)]
            for cur_len in range(len(self.prefix), self.max_length):
                position = torch.tensor([cur_len - 1], dtype=torch.int64)
                logits, self_kv = self.step(current, position, self_kv, mask, *cross)
                if cur_len < self.min_length:
                    banned = torch.zeros(logits.shape[-1], dtype=torch.bool)
                    banned[self.eos] = True
                    logits = logits.masked_fill(banned, float("-inf"))
                chosen = torch.argmax(logits, dim=-1, keepdim=True)
                chosen = torch.where(finished, torch.full_like(chosen, self.pad), chosen)
                finished = finished | (chosen == self.eos)
                pieces.append(chosen)
                current = chosen
            return torch.cat(pieces, dim=1)

    return GreedyLoop


def seed_modules(task: str, model: Any, tokenizer: Any) -> Dict[str, Any]:
    """role -> torch module computing that seed graph (inputs in the seed's order)."""
    import torch

    modules = _modules()
    text = model.config.text_config
    eos, pad, bos = int(text.sep_token_id), int(text.pad_token_id), int(text.bos_token_id)
    vision = modules.VisionEncoder(model.vision_model, "hf")  # TPU-MLIR compiles only standard ONNX ops
    greedy = _greedy_class()

    class Cap(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            prompt_ids = tokenizer("a picture of ").input_ids  # [CLS] a picture of [SEP]
            self.vision = vision
            self.loop = greedy(model.text_decoder, [bos] + list(prompt_ids[1:-1]), *CAPTION_LENGTHS, eos, pad)

        def forward(self, pixel_values: Any) -> Any:
            return self.loop(self.vision(pixel_values))

    class Itm(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.vision = vision
            self.text = modules.MatchText(model.text_encoder, model.itm_head)

        def forward(self, pixel_values: Any, input_ids: Any, attention_mask: Any) -> Any:
            return self.text(input_ids, attention_mask, self.vision(pixel_values))

    class Tenc(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.text = modules.QuestionEncoder(model.text_encoder)

        def forward(self, image_embeds: Any, input_ids: Any, attention_mask: Any) -> Any:
            return self.text(input_ids, attention_mask, image_embeds)

    if task == "caption":
        graphs = {"cap": Cap()}
    elif task == "match":
        graphs = {"itm": Itm()}
    else:
        graphs = {"venc": vision, "tenc": Tenc(), "tdec": greedy(model.text_decoder, [bos], *ANSWER_LENGTHS, eos, pad)}
    for module in graphs.values():
        module.eval()
    return graphs


def _sample_feeds(role: str, model: Any, seed: int) -> Dict[str, Any]:
    """Random feeds of the role's static shapes (batch 1, text length 35)."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    vision, text = model.config.vision_config, model.config.text_config
    size = int(vision.image_size)
    tokens = (size // int(vision.patch_size)) ** 2 + 1
    ids = torch.full((1, TEXT_LENGTH), int(text.pad_token_id), dtype=torch.int64)
    ids[0, :7] = torch.randint(1, int(text.vocab_size) - 2, (7,), generator=gen)
    mask = (torch.arange(TEXT_LENGTH) < 7).to(torch.int64)[None]
    width = int(getattr(text, "encoder_hidden_size", text.hidden_size))
    feeds = {
        "pixel_values": torch.randn(1, 3, size, size, generator=gen),
        "input_ids": ids,
        "attention_mask": mask,
        "image_embeds": torch.randn(1, tokens, width, generator=gen),
        "question_states": torch.randn(1, TEXT_LENGTH, int(text.hidden_size), generator=gen),
    }
    return {name: feeds[name] for name, _ in SEED_GRAPHS[role].inputs}


def export_seed_graph(module: Any, role: str, feeds: Mapping[str, Any], path: Path, verify: bool = True) -> None:
    """torch.onnx.export with the seed's names and static shapes; check it against PyTorch with ORT."""
    import onnx
    import torch

    from blip.export.onnx_export import ort_session

    names = [name for name, _ in SEED_GRAPHS[role].inputs]
    args = tuple(feeds[name] for name in names)
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # tracer warnings: the unrolled loop is meant to be frozen
        torch.onnx.export(module, args, str(path), input_names=names, output_names=["output"],
                          opset_version=SEED_OPSET, do_constant_folding=True, dynamo=False)
    model = onnx.load(str(path))
    model.graph.name = SEED_GRAPHS[role].graph  # what TPU-MLIR's --model_name will call it
    onnx.save(model, str(path))
    if not verify:
        return
    with torch.no_grad():
        expected = module(*args).numpy()
    got = ort_session(path).run(None, {n: feeds[n].numpy() for n in names})[0]
    if SEED_GRAPHS[role].tokens:
        if got.shape != expected.shape or not np.array_equal(got, expected):
            raise ExportError("graph %s: ONNX Runtime tokens %s differ from PyTorch %s" % (path, got.tolist(), expected.tolist()))
        return
    diff = float(np.max(np.abs(got - expected))) if got.shape == expected.shape else float("inf")
    allowed = 1e-3 * max(1.0, float(np.max(np.abs(expected))))
    if not diff <= allowed:
        raise ExportError("graph %s: output differs from PyTorch by %.3g (allowed %.3g)" % (path, diff, allowed))


def export_seed_task(ckpt: Any, package_dir: Path, verify: bool = True) -> Dict[str, str]:
    """Write `<package>/<task>/<graph>.onnx` for every seed role of the checkpoint's task."""
    files: Dict[str, str] = {}
    for n, (role, module) in enumerate(seed_modules(ckpt.task, ckpt.model, ckpt.tokenizer).items()):
        relative = "%s/%s.onnx" % (ckpt.task, SEED_GRAPHS[role].graph)
        export_seed_graph(module, role, _sample_feeds(role, ckpt.model, 31 + n), package_dir / relative, verify)
        log.info("exported %s (seed layout)", relative)
        files[role] = relative
    return files


def seed_task_entry(task: str, config: Any, package_dir: Path, files: Mapping[str, str], backend: str = "onnxruntime") -> Dict[str, Any]:
    """The manifest entry of a seed task (docs/model-package.md)."""
    from blip.export.manifest import sha256_of, task_settings

    settings = task_settings(task, config.text_config)
    if task == "caption":
        settings.update(max_length=CAPTION_LENGTHS[0], min_length=CAPTION_LENGTHS[1])
    if task == "answer":
        settings.update(max_length=ANSWER_LENGTHS[0], min_length=ANSWER_LENGTHS[1], max_text_length=TEXT_LENGTH)
    return {
        "backend": backend,
        "layout": LAYOUT_SEED,
        "image_size": int(config.vision_config.image_size),
        "graphs": {role: {"file": rel, "sha256": sha256_of(package_dir / rel)} for role, rel in files.items()},
        "settings": settings,
    }


def export_seed_package(
    out_dir: PathLike,
    caption: Optional[PathLike] = None,
    match: Optional[PathLike] = None,
    answer: Optional[PathLike] = None,
    name: Optional[str] = None,
    verify: bool = True,
    command: Optional[str] = None,
) -> Path:
    """Checkpoint folders -> a seed-layout ONNX package at `out_dir` (backend onnxruntime); the
    checks and staging are `export_package`'s."""
    from blip.export.api import export_package

    return export_package(out_dir, caption, match, answer, name=name, verify=verify, layout=LAYOUT_SEED,
                          command=command)


def write_seed_package(staging: Path, checkpoints: Mapping[str, Any], name: str, verify: bool,
                       command: Optional[str]) -> None:
    """Seed graphs of every task, the tokenizer folder and manifest.yaml, all inside `staging`."""
    from blip.export import manifest
    from blip.export.checkpoint import read_preprocess

    entries = {}
    for task, ckpt in checkpoints.items():
        entries[task] = seed_task_entry(task, ckpt.model.config, staging, export_seed_task(ckpt, staging, verify))
    first = next(iter(checkpoints.values()))
    manifest.write_tokenizer(first.tokenizer, staging)
    source = {"layout": "sophon-demo sample/BLIP seed graphs", "opset": SEED_OPSET,
              "checkpoints": {t: str(c.folder.resolve()) for t, c in checkpoints.items()},
              "command": command or " ".join(sys.argv)}
    manifest.write_manifest(staging, manifest.build_manifest(name, read_preprocess(first.folder), entries, source))


# ---------------------------------------------------------------------------------------------
# static-shape split graphs for TPU-MLIR


def _fix_dims(src: Path, dst: Path, sizes: Mapping[str, int]) -> None:
    """Replace the named dynamic dims of the graph's inputs and outputs; re-infer inner shapes."""
    import onnx

    model = onnx.load(str(src))
    for value in list(model.graph.input) + list(model.graph.output):
        for dim in value.type.tensor_type.shape.dim:
            if dim.HasField("dim_param"):
                if dim.dim_param not in sizes:
                    raise ExportError("%s: %s has dynamic dim %r with no size given" % (src, value.name, dim.dim_param))
                dim.dim_value = int(sizes[dim.dim_param])
    del model.graph.value_info[:]
    model = onnx.shape_inference.infer_shapes(model)
    dst.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(dst))


def _refuse_runtime_ops(path: Path) -> None:
    """TPU-MLIR compiles standard ONNX ops only; a fused-attention graph is for ONNX Runtime."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    foreign = sorted({"%s::%s" % (n.domain, n.op_type) for n in model.graph.node if n.domain not in ("", "ai.onnx")})
    if foreign:
        raise ExportError("%s: %s is ONNX Runtime's own op, which TPU-MLIR cannot compile; export the package "
                          "again with --vision-attention hf" % (path, ", ".join(foreign)))


def _image_tokens(vision_path: Path) -> int:
    import onnx

    model = onnx.load(str(vision_path), load_external_data=False)
    dims = model.graph.output[0].type.tensor_type.shape.dim
    if len(dims) != 3 or not dims[1].HasField("dim_value"):
        raise ExportError("%s: image_embeds must have a static token count" % vision_path)
    return int(dims[1].dim_value)


def static_sizes(task: str, spec: Mapping[str, Any], image_tokens: int, prompts: int, questions: int) -> Dict[str, int]:
    """Dynamic-dim name -> size for one task's split graphs (names from blip/export/onnx_export.py)."""
    settings = spec.get("settings") or {}
    text = int(settings.get("max_text_length", TEXT_LENGTH))
    if task == "caption":
        return {"B": 1, "S": image_tokens, "new_tokens": 1, "L": int(settings.get("max_length", CAPTION_LENGTHS[0]))}
    if task == "match":
        return {"P": prompts, "T": text}
    return {"Q": questions, "T": text, "B": questions, "S": text, "new_tokens": 1,
            "L": int(settings.get("max_length", ANSWER_LENGTHS[0]))}


def static_split_package(src: PathLike, out_dir: PathLike, prompts: int = 1, questions: int = 1) -> Path:
    """Copy a split package with every graph's shapes fixed (still ONNX, backend onnxruntime)."""
    from blip.export.manifest import sha256_of

    src, out_dir = Path(src), Path(out_dir)
    doc = yaml.safe_load((src / "manifest.yaml").read_text(encoding="utf-8"))
    if out_dir.exists() and any(out_dir.iterdir()):
        raise ExportError("output %s exists and is not empty" % out_dir)
    for body in doc["tasks"].values():
        for entry in body["graphs"].values():
            _refuse_runtime_ops(src / entry["file"])
    shutil.copytree(str(src / doc.get("tokenizer", "tokenizer")), str(out_dir / doc.get("tokenizer", "tokenizer")))
    for task, body in doc["tasks"].items():
        if body.get("layout", LAYOUT_SPLIT) != LAYOUT_SPLIT:
            raise ExportError("%s: task %s is not layout split" % (src, task))
        tokens = _image_tokens(src / body["graphs"]["vision"]["file"])
        sizes = static_sizes(task, body, tokens, prompts, questions)
        for entry in body["graphs"].values():
            _fix_dims(src / entry["file"], out_dir / entry["file"], sizes)
            entry["sha256"] = sha256_of(out_dir / entry["file"])
        body["static"] = {k: int(v) for k, v in sizes.items()}
    doc.setdefault("source", {})["static_shapes"] = {"prompts": prompts, "questions": questions, "from": str(src)}
    _write_yaml(out_dir / "manifest.yaml", doc)
    return out_dir


def bmodel_package(static_pkg: PathLike, bmodel_dir: PathLike, chip: str) -> Path:
    """Write the sail manifest for a static split package whose graphs were compiled into
    `bmodel_dir` (same relative paths, `.bmodel` instead of `.onnx`); the tokenizer is copied."""
    from blip.export.manifest import sha256_of

    static_pkg, bmodel_dir = Path(static_pkg), Path(bmodel_dir)
    doc = yaml.safe_load((static_pkg / "manifest.yaml").read_text(encoding="utf-8"))
    tokenizer = doc.get("tokenizer", "tokenizer")
    if not (bmodel_dir / tokenizer).exists():
        shutil.copytree(str(static_pkg / tokenizer), str(bmodel_dir / tokenizer))
    for task, body in doc["tasks"].items():
        body["backend"] = "sail"
        for role, entry in body["graphs"].items():
            rel = str(Path(entry["file"]).with_suffix(".bmodel"))
            if not (bmodel_dir / rel).is_file():
                raise ExportError("%s: %s missing (task %s, role %s): compile it first" % (bmodel_dir, rel, task, role))
            entry.update(file=rel, sha256=sha256_of(bmodel_dir / rel))
    doc.setdefault("source", {})["chip"] = chip.lower()
    _write_yaml(bmodel_dir / "manifest.yaml", doc)
    return bmodel_dir / "manifest.yaml"


def _write_yaml(path: Path, doc: Mapping[str, Any]) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        yaml.safe_dump(dict(doc), fh, sort_keys=False, default_flow_style=False, allow_unicode=True)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m blip.export.seed", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    static = sub.add_parser("static", help="split package -> the same graphs with static shapes")
    static.add_argument("src")
    static.add_argument("out")
    static.add_argument("--prompts", type=int, default=1)
    static.add_argument("--questions", type=int, default=1)
    bm = sub.add_parser("bmodels", help="write the sail manifest next to compiled split bmodels")
    bm.add_argument("static_pkg")
    bm.add_argument("bmodel_dir")
    bm.add_argument("--chip", default="bm1684x")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        if args.command == "static":
            print(static_split_package(args.src, args.out, args.prompts, args.questions))
        else:
            print(bmodel_package(args.static_pkg, args.bmodel_dir, args.chip))
    except (ExportError, OSError) as exc:
        log.error("%s", exc)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
