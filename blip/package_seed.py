"""`blipd package-seed DIR --chip bm1684x`: a model package from the sophon-demo BLIP bmodels as published.

DIR is the seed's `models/` folder as `scripts/download.sh` leaves it (reference/seed-blip.md §1):
`<CHIP>/blip_{cap,itm,vqa_venc,vqa_tenc,vqa_tdec}_<chip>_f32_1b.bmodel` (or the files directly in
DIR) and `bert-base-uncased/` (or `tokenizer/`). We write DIR/manifest.yaml with the sha256 of every
file (docs/model-package.md; backend sail, layout seed); nothing is copied or renamed.
"""
import glob
import logging
import os
from pathlib import Path
from typing import Any, Dict, List, Optional, Union

import yaml

from blip.errors import BlipError, PackageError
from blip.graphs import LAYOUT_SEED
from blip.package import MANIFEST, SEED_ROLES, file_sha256
from blip.seed import DEFAULT_PROMPT, SEED_GRAPHS

log = logging.getLogger(__name__)

CHIPS = ("bm1684", "bm1684x", "bm1688", "cv186ah")
TOKENIZER_DIRS = ("bert-base-uncased", "tokenizer")
SEED_IMAGE_SIZES = {"caption": 384, "match": 384, "answer": 480}
"""What the published bmodels take (seed-blip.md §4); read from the files instead when sail is here."""
CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]
PathLike = Union[str, Path]


def _find_bmodel(root: Path, chip: str, role: str) -> Optional[Path]:
    """The role's file for `chip`: F32 (as published) before other precisions; None if absent."""
    stem = SEED_GRAPHS[role].graph
    found: List[str] = []
    for folder in (root / chip.upper(), root):
        found += sorted(glob.glob(str(folder / ("%s_%s_*.bmodel" % (stem, chip)))))
    found.sort(key=lambda p: (not p.endswith("_f32_1b.bmodel"), p))
    return Path(found[0]) if found else None


def _tokenizer_dir(root: Path) -> Path:
    for name in TOKENIZER_DIRS:
        folder = root / name
        if (folder / "tokenizer.json").is_file() or (folder / "vocab.txt").is_file():
            return folder
    raise PackageError(
        "package-seed %s: no tokenizer: expected %s/ with vocab.txt (the seed's bert-base-uncased.zip)"
        % (root, " or ".join(TOKENIZER_DIRS))
    )


def _image_size(task: str, files: Dict[str, Path]) -> int:
    """The pixel size the task's bmodel takes, when sail can load it here; else the seed's."""
    role = "venc" if task == "answer" else SEED_ROLES[task][0]
    try:
        from blip.runtime.sail import SailRuntime

        graph = SailRuntime().load(str(files[role]))
    except BlipError as exc:
        log.info("image size of %s: %s; using the seed's %d", files[role].name, exc, SEED_IMAGE_SIZES[task])
        return SEED_IMAGE_SIZES[task]
    size = int(graph.inputs["pixel_values"].shape[-1])
    graph.close()
    return size


def _settings(task: str, tokenizer: Any) -> Dict[str, Any]:
    """The sample's settings; the ids come from the tokenizer folder."""
    ids = {"bos_token_id": tokenizer.bos_id, "eos_token_id": tokenizer.sep_id, "pad_token_id": tokenizer.pad_id}
    if task == "caption":
        return dict(prompt=DEFAULT_PROMPT, max_length=20, min_length=5, **ids)
    if task == "match":
        return {"max_text_length": 35}
    return dict(max_length=10, min_length=1, max_text_length=35, **ids)


def _tasks(root: Path, chip: str) -> Dict[str, Dict[str, Path]]:
    """task -> role -> file, for every task whose files are all there."""
    tasks: Dict[str, Dict[str, Path]] = {}
    for task, roles in SEED_ROLES.items():
        files = {role: _find_bmodel(root, chip, role) for role in roles}
        present = {role: path for role, path in files.items() if path is not None}
        if present and len(present) != len(roles):
            missing = ", ".join("%s_%s_f32_1b.bmodel" % (SEED_GRAPHS[r].graph, chip) for r in roles if r not in present)
            raise PackageError("package-seed %s: task %s is incomplete: missing %s" % (root, task, missing))
        if present:
            tasks[task] = present
    if not tasks:
        raise PackageError(
            "package-seed %s: no seed bmodel for %s (expected %s/blip_cap_%s_f32_1b.bmodel and friends)"
            % (root, chip, chip.upper(), chip)
        )
    return tasks


def package_seed(directory: PathLike, chip: str, name: Optional[str] = None) -> Path:
    """Write DIR/manifest.yaml for the seed bmodels of `chip` found in DIR; returns its path."""
    from blip.tokenizer import Tokenizer

    root = Path(directory).resolve()
    chip = chip.lower()
    if chip not in CHIPS:
        raise PackageError("package-seed: chip %r is not one of %s" % (chip, ", ".join(CHIPS)))
    if not root.is_dir():
        raise PackageError("package-seed %s: not a folder" % root)
    tok_dir = _tokenizer_dir(root)
    tokenizer = Tokenizer.from_dir(str(tok_dir))
    entries: Dict[str, Any] = {}
    for task, files in _tasks(root, chip).items():
        graphs = {
            role: {"file": os.path.relpath(str(path), str(root)), "sha256": file_sha256(str(path))}
            for role, path in files.items()
        }
        entries[task] = {"backend": "sail", "layout": LAYOUT_SEED, "image_size": _image_size(task, files),
                         "graphs": graphs, "settings": _settings(task, tokenizer)}
    doc = {
        "format": 1,
        "name": name or "blip-seed-%s" % chip,
        "tokenizer": tok_dir.name,
        "preprocess": {"mean": CLIP_MEAN, "std": CLIP_STD, "interpolation": "bicubic"},
        "tasks": entries,
        "source": {"seed": "sophgo/sophon-demo sample/BLIP", "chip": chip},
    }
    path = root / MANIFEST
    with open(path, "w", encoding="utf-8") as fh:
        yaml.safe_dump(doc, fh, sort_keys=False, default_flow_style=False)
    log.info("wrote %s (%s)", path, ", ".join(entries))
    return path

