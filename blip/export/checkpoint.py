"""Load and check a Hugging Face BLIP checkpoint folder before anything is exported.

A wrong folder must fail here with one line naming it, not deep inside tracing.
"""
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Optional

from blip.errors import ExportError

log = logging.getLogger(__name__)

# task -> the transformers class that task's checkpoint must be
TASK_ARCHITECTURES: Dict[str, str] = {
    "caption": "BlipForConditionalGeneration",
    "match": "BlipForImageTextRetrieval",
    "answer": "BlipForQuestionAnswering",
}
WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)
DEC_TOKEN = "[DEC]"
ENC_TOKEN = "[ENC]"


@dataclass(frozen=True)
class Checkpoint:
    """A loaded checkpoint: the eval-mode model, its tokenizer and the folder it came from."""

    task: str
    folder: Path
    model: Any
    tokenizer: Any


def check_folder(folder: Path, task: str) -> Dict[str, Any]:
    """The folder's config.json, checked to be the BLIP class `task` needs."""
    if not folder.is_dir():
        raise ExportError("%s checkpoint %s: not a folder" % (task, folder))
    config_path = folder / "config.json"
    if not config_path.is_file():
        raise ExportError("%s checkpoint %s: no config.json, not a Hugging Face checkpoint" % (task, folder))
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ExportError("%s checkpoint %s: unreadable config.json (%s)" % (task, folder, exc)) from None
    if not isinstance(config, dict):
        raise ExportError("%s checkpoint %s: config.json is not an object" % (task, folder))
    model_type = config.get("model_type")
    if model_type != "blip":
        raise ExportError("%s checkpoint %s: model_type is %r, not 'blip'" % (task, folder, model_type))
    wanted = TASK_ARCHITECTURES[task]
    architectures = config.get("architectures") or []
    if wanted not in architectures:
        raise ExportError(
            "%s checkpoint %s: architectures %s do not include %s" % (task, folder, architectures, wanted)
        )
    if not any((folder / name).is_file() for name in WEIGHT_FILES):
        raise ExportError("%s checkpoint %s: no weights (%s)" % (task, folder, " or ".join(WEIGHT_FILES[::2])))
    return config


def load_tokenizer(folder: Path, text_config: Any, task: str) -> Any:
    """BertTokenizerFast with [DEC] as bos and [ENC] as an extra special token, as real BLIP has.

    Loaded with from_pretrained (transformers 5 ignores `vocab_file=` and would build a 5-token
    vocabulary), then checked against the text config's ids so a mismatch fails at export time.
    """
    from transformers import BertTokenizerFast

    if not (folder / "tokenizer.json").is_file() and not (folder / "vocab.txt").is_file():
        raise ExportError("%s checkpoint %s: no tokenizer.json or vocab.txt" % (task, folder))
    try:
        tokenizer = BertTokenizerFast.from_pretrained(str(folder))
    except (OSError, ValueError) as exc:
        raise ExportError("%s checkpoint %s: tokenizer does not load (%s)" % (task, folder, exc)) from None
    vocab = tokenizer.get_vocab()
    if DEC_TOKEN not in vocab or tokenizer.bos_token != DEC_TOKEN:
        tokenizer.add_special_tokens({"bos_token": DEC_TOKEN})
    if ENC_TOKEN not in tokenizer.get_vocab():
        tokenizer.add_special_tokens({"additional_special_tokens": [ENC_TOKEN]})
    _check_tokenizer(tokenizer, text_config, folder, task)
    return tokenizer


def _check_tokenizer(tokenizer: Any, text_config: Any, folder: Path, task: str) -> None:
    """Ids the graphs rely on must be the ones the tokenizer produces."""
    size = len(tokenizer)
    if size < 8 or size > text_config.vocab_size:
        raise ExportError(
            "%s checkpoint %s: tokenizer has %d tokens, text config vocab_size is %d"
            % (task, folder, size, text_config.vocab_size)
        )
    expected = {
        DEC_TOKEN: text_config.bos_token_id,
        tokenizer.sep_token: text_config.sep_token_id,
        tokenizer.pad_token: text_config.pad_token_id,
    }
    for token, config_id in expected.items():
        token_id = tokenizer.convert_tokens_to_ids(token)
        if token_id != config_id:
            raise ExportError(
                "%s checkpoint %s: tokenizer id of %s is %s, text config says %s"
                % (task, folder, token, token_id, config_id)
            )


def load_checkpoint(folder: Path, task: str, attn_implementation: Optional[str] = None) -> Checkpoint:
    """Check the folder, then load model (eval, float32) and tokenizer."""
    folder = Path(folder)
    check_folder(folder, task)  # before importing transformers: a wrong folder fails in milliseconds
    import transformers

    model_class = getattr(transformers, TASK_ARCHITECTURES[task])
    kwargs: Dict[str, Any] = {"dtype": "float32"}
    if attn_implementation:
        kwargs["attn_implementation"] = attn_implementation
    try:
        model = model_class.from_pretrained(str(folder), **kwargs)
    except (OSError, ValueError, RuntimeError, KeyError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ExportError("%s checkpoint %s: weights do not load (%s)" % (task, folder, first)) from None
    model.eval()
    tokenizer = load_tokenizer(folder, model.config.text_config, task)
    log.info("loaded %s checkpoint %s (%s, %d tokens)", task, folder, type(model).__name__, len(tokenizer))
    return Checkpoint(task=task, folder=folder, model=model, tokenizer=tokenizer)


def read_preprocess(folder: Path) -> Dict[str, Any]:
    """Mean/std from the checkpoint's preprocessor_config.json, CLIP's constants otherwise."""
    mean = [0.48145466, 0.4578275, 0.40821073]
    std = [0.26862954, 0.26130258, 0.27577711]
    path = Path(folder) / "preprocessor_config.json"
    if path.is_file():
        try:
            config = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ExportError("checkpoint %s: unreadable preprocessor_config.json (%s)" % (folder, exc)) from None
        mean = [float(v) for v in config.get("image_mean", mean)]
        std = [float(v) for v in config.get("image_std", std)]
    return {"mean": mean, "std": std, "interpolation": "bicubic"}
