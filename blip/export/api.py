"""Hugging Face BLIP checkpoint folders -> a model package (ONNX, layout split).

The one entry point other code calls: `export_package`. Graph names and shapes follow
blip/graphs.py; the manifest follows docs/model-package.md.
"""
import logging
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Dict, Optional, Union

from blip.errors import ExportError
from blip.graphs import LAYOUT_SEED, LAYOUT_SPLIT, TASKS, VISION_ATTENTION_FORMS

log = logging.getLogger(__name__)

PathLike = Union[str, Path]


def _same_vocabulary(checkpoints: Dict[str, Any]) -> None:
    """A package has one tokenizer: every task's checkpoint must agree on it."""
    tasks = list(checkpoints)
    first = checkpoints[tasks[0]].tokenizer.get_vocab()
    for task in tasks[1:]:
        if checkpoints[task].tokenizer.get_vocab() != first:
            raise ExportError(
                "checkpoints %s and %s have different vocabularies; a package has one tokenizer"
                % (checkpoints[tasks[0]].folder, checkpoints[task].folder)
            )


def _source(checkpoints: Dict[str, Any], command: Optional[str]) -> Dict[str, Any]:
    import torch
    import transformers

    return {
        "command": command or " ".join([Path(sys.argv[0]).name] + sys.argv[1:]),
        "checkpoints": {task: str(ckpt.folder.resolve()) for task, ckpt in checkpoints.items()},
        "exporter": "blip.export (torch.onnx, opset 17)",
        "versions": {
            "python": platform.python_version(),
            "torch": str(torch.__version__),
            "transformers": str(transformers.__version__),
        },
    }


def _umask() -> int:
    """The process umask (mkdtemp makes 0700 folders; the package should get the usual mode)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _check_arguments(
    out_dir: Path, folders: Dict[str, Optional[PathLike]], layout: str, vision_attention: str = "hf"
) -> Dict[str, Path]:
    if layout not in (LAYOUT_SPLIT, LAYOUT_SEED):
        raise ExportError("export layout %r is unknown; use 'split' or 'seed'" % (layout,))
    if vision_attention not in VISION_ATTENTION_FORMS:
        raise ExportError("export vision attention %r is unknown; use one of %s"
                          % (vision_attention, ", ".join(VISION_ATTENTION_FORMS)))
    if layout == LAYOUT_SEED and vision_attention != "hf":
        raise ExportError("export --layout seed is for TPU-MLIR, which compiles only --vision-attention hf")
    given = {task: Path(folder) for task, folder in folders.items() if folder is not None}
    if not given:
        raise ExportError("export %s: give at least one checkpoint (caption, match or answer)" % out_dir)
    check_output(out_dir)
    return given


def check_output(out_dir: Path) -> None:
    """A package is written only where nothing is: an absent or empty folder."""
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise ExportError("export output %s exists and is not empty" % out_dir)


def stage_package(out_dir: PathLike, write: Callable[[Path], None]) -> Path:
    """Run `write(staging)` in a temporary folder beside `out_dir`, then move it into place.

    Every package writer (split and seed export, quantize) goes through here, so a failed or
    interrupted run never leaves a half-written package behind and the folder gets the usual mode.
    """
    out_dir = Path(out_dir)
    check_output(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".%s-" % out_dir.name, dir=str(out_dir.parent)))
    try:
        write(staging)
        if out_dir.exists():
            out_dir.rmdir()
        staging.rename(out_dir)
        out_dir.chmod(0o777 & ~_umask())  # mkdtemp made it 0700
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out_dir


def _write_package(
    staging: Path, checkpoints: Dict[str, Any], name: str, verify: bool, command: Optional[str],
    vision_attention: str,
) -> None:
    """Graphs of every task, the tokenizer folder and manifest.yaml, all inside `staging`."""
    from blip.export import manifest
    from blip.export.checkpoint import read_preprocess
    from blip.export.tasks import export_task

    entries = {}
    for task, ckpt in checkpoints.items():
        files = export_task(ckpt, staging, verify=verify, vision_attention=vision_attention)
        entries[task] = manifest.task_entry(task, ckpt.model.config, staging, files)
    first = next(iter(checkpoints.values()))
    tokenizer_dir = manifest.write_tokenizer(first.tokenizer, staging)
    source = _source(checkpoints, command)
    source["vision_attention"] = vision_attention
    source["tokenizer_sha256"] = {p.name: manifest.sha256_of(p) for p in sorted(tokenizer_dir.iterdir())}
    doc = manifest.build_manifest(name, read_preprocess(first.folder), entries, source)
    manifest.write_manifest(staging, doc)


def export_package(
    out_dir: PathLike,
    caption: Optional[PathLike] = None,
    match: Optional[PathLike] = None,
    answer: Optional[PathLike] = None,
    name: Optional[str] = None,
    verify: bool = True,
    layout: str = LAYOUT_SPLIT,
    command: Optional[str] = None,
    vision_attention: str = "hf",
) -> Path:
    """Export the given checkpoints (any subset of the three tasks) into a new package at `out_dir`.

    Every graph is verified against PyTorch with ONNX Runtime (and our modules against transformers)
    when `verify`; the package is assembled in a temporary folder and moved into place only when
    complete, so a failed export never leaves a half-written package behind. `vision_attention`
    "fused" writes ONNX Runtime's MultiHeadAttention op (ONNX Runtime only; layout split only).
    """
    from blip.export.checkpoint import check_folder, load_checkpoint

    out_dir = Path(out_dir)
    given = _check_arguments(out_dir, {"caption": caption, "match": match, "answer": answer}, layout, vision_attention)
    for task, folder in given.items():
        check_folder(folder, task)  # every folder checked before the slow imports and loads
    start = time.monotonic()
    checkpoints = {task: load_checkpoint(given[task], task) for task in TASKS if task in given}
    _same_vocabulary(checkpoints)
    if layout == LAYOUT_SEED:  # the sophon-demo graph names and static shapes, for TPU-MLIR
        from blip.export.seed import write_seed_package

        stage_package(out_dir, lambda staging: write_seed_package(staging, checkpoints, name or out_dir.name, verify, command))
    else:
        stage_package(out_dir, lambda staging: _write_package(staging, checkpoints, name or out_dir.name, verify, command,
                                                              vision_attention))
    log.info("package %s written (%s, layout %s) in %.1f s", out_dir, ", ".join(checkpoints), layout,
             time.monotonic() - start)
    return out_dir
