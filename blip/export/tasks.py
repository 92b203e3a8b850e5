"""Export the graphs of one task (caption, match or answer) from its loaded checkpoint."""
import logging
from pathlib import Path
from typing import Any, Dict

import torch

from blip.export import modules, reference
from blip.export.checkpoint import Checkpoint
from blip.export.onnx_export import export_and_verify
from blip.export.samples import Dims, role_feeds
from blip.graphs import SPLIT_ROLES

log = logging.getLogger(__name__)

# How the vision graph writes attention (blip.export.modules.VisionEncoder). transformers' BLIP ViT
# refuses attn_implementation="sdpa", so "sdpa" and "fused" are our own forms over the same weights.
# "hf" stays the default: it is portable (TPU-MLIR compiles it; static_split_package refuses a
# "fused" graph) and the others gain little in ONNX Runtime on BLIP-base @384, 2 threads
# (bench/blip_tasks.py `vision_sdpa_speedup_vs_hf` 1.03, `vision_fused_speedup_vs_hf` 1.03; earlier
# runs sdpa 0.57-1.0, fused 1.02-1.08): Gemm is ~83 % of the graph's time, attention's products ~10 %.
VISION_ATTENTION = "hf"


def task_modules(task: str, model: Any, vision_attention: str = VISION_ATTENTION) -> Dict[str, torch.nn.Module]:
    """role -> eval-mode module for every graph of `task` (layout split)."""
    graphs: Dict[str, torch.nn.Module] = {"vision": modules.VisionEncoder(model.vision_model, vision_attention)}
    if task == "match":
        graphs["text"] = modules.MatchText(model.text_encoder, model.itm_head)
    if task == "answer":
        graphs["question"] = modules.QuestionEncoder(model.text_encoder)
    if task in ("caption", "answer"):
        graphs["decoder_init"] = modules.DecoderInit(model.text_decoder)
        graphs["decoder_step"] = modules.DecoderStep(model.text_decoder)
    for module in graphs.values():
        module.eval()
    return {role: graphs[role] for role in SPLIT_ROLES[task]}


def _check_against_transformers(
    task: str, graphs: Dict[str, torch.nn.Module], ckpt: Checkpoint, dims: Dims, image_embeds: torch.Tensor
) -> None:
    model, folder = ckpt.model, ckpt.folder
    pixels = role_feeds("vision", dims, image_embeds)[1]["pixel_values"]
    diffs = {"vision": reference.check_vision(graphs["vision"], model, pixels, folder)}
    if "text" in graphs:
        diffs["text"] = reference.check_text(graphs["text"], model, dims, image_embeds, folder)
    if "question" in graphs:
        diffs["question"] = reference.check_question(graphs["question"], model, dims, image_embeds, folder)
    if "decoder_step" in graphs:
        diffs["decoder"] = reference.check_decoder(graphs["decoder_init"], graphs["decoder_step"], model, dims, folder)
    log.info("%s modules match transformers: %s", task, ", ".join("%s %.1e" % kv for kv in diffs.items()))


def export_task(
    ckpt: Checkpoint, package_dir: Path, verify: bool = True, vision_attention: str = VISION_ATTENTION
) -> Dict[str, str]:
    """Write `<package>/<task>/<role>.onnx` for every role; returns role -> path relative to the package."""
    dims = Dims(ckpt.model.config)
    graphs = task_modules(ckpt.task, ckpt.model, vision_attention)
    with torch.no_grad():
        image_embeds = graphs["vision"](role_feeds("vision", dims, None)[0]["pixel_values"])
    if verify:
        _check_against_transformers(ckpt.task, graphs, ckpt, dims, image_embeds)
    files: Dict[str, str] = {}
    for role, module in graphs.items():
        relative = "%s/%s.onnx" % (ckpt.task, role)
        trace, check = role_feeds(role, dims, image_embeds)
        export_and_verify(module, role, trace, check, package_dir / relative, verify=verify)
        files[role] = relative
    return files
