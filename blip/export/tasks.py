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

# transformers' BLIP ViT refuses attn_implementation="sdpa" (ValueError), so the SDPA form is our
# own module over the same weights. Its ONNX graph was never faster in ONNX Runtime 1.32 on
# BLIP-base @384 (bench/blip_tasks.py `vision_sdpa_over_eager` 1.00-1.75 over four runs, 1.04 with
# one thread), so the vision graph is HF's own forward unless asked otherwise.
VISION_SDPA = False


def task_modules(task: str, model: Any, sdpa_vision: bool = VISION_SDPA) -> Dict[str, torch.nn.Module]:
    """role -> eval-mode module for every graph of `task` (layout split)."""
    graphs: Dict[str, torch.nn.Module] = {"vision": modules.VisionEncoder(model.vision_model, sdpa=sdpa_vision)}
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
    ckpt: Checkpoint, package_dir: Path, verify: bool = True, sdpa_vision: bool = VISION_SDPA
) -> Dict[str, str]:
    """Write `<package>/<task>/<role>.onnx` for every role; returns role -> path relative to the package."""
    dims = Dims(ckpt.model.config)
    graphs = task_modules(ckpt.task, ckpt.model, sdpa_vision)
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
