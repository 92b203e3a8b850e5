"""Write manifest.yaml (docs/model-package.md) and the package's tokenizer folder."""
import hashlib
from pathlib import Path
from typing import Any, Dict, Mapping

import yaml

from blip.errors import ExportError
from blip.graphs import LAYOUT_SPLIT

MANIFEST_FORMAT = 1
TOKENIZER_DIR = "tokenizer"
CAPTION_PROMPT = "a picture of "


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_tokenizer(tokenizer: Any, package_dir: Path) -> Path:
    """tokenizer/tokenizer.json (the fast backend, added tokens included) and vocab.txt (id order)."""
    folder = package_dir / TOKENIZER_DIR
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer.backend_tokenizer.save(str(folder / "tokenizer.json"))
    by_id = {token_id: token for token, token_id in tokenizer.get_vocab().items()}
    if sorted(by_id) != list(range(len(by_id))):
        raise ExportError("tokenizer of %s: ids are not contiguous, cannot write vocab.txt" % package_dir)
    (folder / "vocab.txt").write_text("".join(by_id[i] + "\n" for i in range(len(by_id))), encoding="utf-8")
    return folder


def task_settings(task: str, text_config: Any) -> Dict[str, Any]:
    """Decoding settings of a task; the ids are the checkpoint's (eos = sep, as BLIP's generate)."""
    ids = {
        "bos_token_id": int(text_config.bos_token_id),
        "eos_token_id": int(text_config.sep_token_id),
        "pad_token_id": int(text_config.pad_token_id),
    }
    if task == "caption":
        return dict(prompt=CAPTION_PROMPT, max_length=20, min_length=5, **ids)
    if task == "match":
        return {"max_text_length": 35}
    return dict(max_length=10, min_length=1, max_text_length=35, **ids)


def task_entry(task: str, config: Any, package_dir: Path, files: Mapping[str, str]) -> Dict[str, Any]:
    graphs = {role: {"file": rel, "sha256": sha256_of(package_dir / rel)} for role, rel in files.items()}
    return {
        "backend": "onnxruntime",
        "layout": LAYOUT_SPLIT,
        "image_size": int(config.vision_config.image_size),
        "graphs": graphs,
        "settings": task_settings(task, config.text_config),
    }


def write_manifest(package_dir: Path, manifest: Mapping[str, Any]) -> Path:
    path = package_dir / "manifest.yaml"
    with open(path, "w", encoding="utf-8") as handle:
        yaml.safe_dump(dict(manifest), handle, sort_keys=False, default_flow_style=False, allow_unicode=True)
    return path


def build_manifest(
    name: str, preprocess: Mapping[str, Any], tasks: Mapping[str, Any], source: Mapping[str, Any]
) -> Dict[str, Any]:
    return {
        "format": MANIFEST_FORMAT,
        "name": name,
        "tokenizer": TOKENIZER_DIR,
        "preprocess": dict(preprocess),
        "tasks": dict(tasks),
        "source": dict(source),
    }
