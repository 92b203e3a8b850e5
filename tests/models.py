"""Tiny random BLIP checkpoints (Hugging Face folders) and the model package exported from them.

Plain functions, no pytest: parity tests, daemon tests and benchmarks call them. Everything is seeded,
so two calls write the same weights. The weights are scaled up from transformers' defaults so greedy
decoding has clear winners (top-2 logit margins well above float noise); parity tests assert that.
"""
from contextlib import contextmanager
from pathlib import Path
from typing import Dict, Iterable, Iterator, List, Optional, Union

PathLike = Union[str, Path]

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
WORDS = (
    "a an the of on in at with and is are what where how many color picture photo image person man woman "
    "people dog cat car bus street road gate door tree house sky red green blue yellow black white two three "
    "one open closed standing sitting walking parked next to near there yes no it this that left right small big"
).split()
SUFFIXES = ["##s", "##ing", "##ed"]
DEC, ENC = "[DEC]", "[ENC]"

TASK_CLASSES = {
    "caption": "BlipForConditionalGeneration",
    "match": "BlipForImageTextRetrieval",
    "answer": "BlipForQuestionAnswering",
}
TASK_SEEDS = {"caption": 11, "match": 12, "answer": 10.0}

IMAGE_SIZE = 64
HIDDEN = 32


def tiny_vocab() -> List[str]:
    """BERT specials, ordinary English words, a few WordPiece suffixes, then [DEC] and [ENC] (as BLIP)."""
    return SPECIALS + WORDS + SUFFIXES + [DEC, ENC]


def tiny_config(vocab_size: int, bos: int, sep: int, pad: int):
    """A BlipConfig with tiny dimensions and the tokenizer's ids."""
    from transformers import BlipConfig

    text = dict(
        vocab_size=vocab_size,
        hidden_size=HIDDEN,
        encoder_hidden_size=HIDDEN,
        intermediate_size=2 * HIDDEN,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=64,
        bos_token_id=bos,
        sep_token_id=sep,
        eos_token_id=sep,
        pad_token_id=pad,
        initializer_range=0.2,
    )
    vision = dict(
        hidden_size=HIDDEN,
        intermediate_size=2 * HIDDEN,
        num_hidden_layers=2,
        num_attention_heads=4,
        image_size=IMAGE_SIZE,
        patch_size=16,
        initializer_range=0.2,
    )
    return BlipConfig(
        text_config=text, vision_config=vision, projection_dim=HIDDEN, image_text_hidden_size=HIDDEN,
        initializer_range=0.2,
    )


def tiny_tokenizer():
    """BertTokenizerFast over the tiny vocabulary; [DEC] bos, [ENC] extra special (as BLIP's)."""
    from transformers import BertTokenizerFast

    words = tiny_vocab()
    base = {w: i for i, w in enumerate(words[:-2])}
    tokenizer = BertTokenizerFast(vocab=base)
    tokenizer.add_special_tokens({"bos_token": DEC, "additional_special_tokens": [ENC]})
    # transformers 5 silently drops a vocabulary it cannot read: make sure ours is there
    assert len(tokenizer) == len(words), len(tokenizer)
    assert tokenizer.convert_tokens_to_ids(DEC) == len(words) - 2
    assert tokenizer.convert_tokens_to_ids(ENC) == len(words) - 1
    return tokenizer


# Added to the LM-head bias of [SEP]: random decoders otherwise never stop, and the tests should
# see both endings (eos before max_length, and max_length reached). Tuned per task on the seeds.
EOS_BIAS = {"caption": 6.0, "answer": 10.0}


def _shape_weights(model, task: str, sep_id: int) -> None:
    """Widen the word embeddings (tied to the LM head) so greedy picks are never near-ties,
    and make [SEP] likely enough to end some sequences early."""
    import torch

    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith("word_embeddings.weight"):
                param.normal_(0.0, 1.0)
        if task in EOS_BIAS:
            model.text_decoder.cls.predictions.bias[sep_id] += EOS_BIAS[task]


def make_tiny_checkpoint(folder: PathLike, task: str) -> Path:
    """Save one tiny random checkpoint of `task`'s class with the tiny tokenizer."""
    import torch
    import transformers

    folder = Path(folder)
    tokenizer = tiny_tokenizer()
    config = tiny_config(len(tokenizer), tokenizer.bos_token_id, tokenizer.sep_token_id, tokenizer.pad_token_id)
    torch.manual_seed(TASK_SEEDS[task])
    model = getattr(transformers, TASK_CLASSES[task])(config).eval()
    _shape_weights(model, task, tokenizer.sep_token_id)
    model.save_pretrained(str(folder))
    tokenizer.save_pretrained(str(folder))
    return folder


@contextmanager
def one_torch_thread() -> Iterator[None]:
    """Tiny models run ~100x faster on one intra-op thread than on two contended ones."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def make_tiny_checkpoints(root: PathLike, tasks: Iterable[str] = ("caption", "match", "answer")) -> Dict[str, Path]:
    """One tiny checkpoint folder per task under `root`: {task: folder}."""
    root = Path(root)
    with one_torch_thread():
        return {task: make_tiny_checkpoint(root / ("hf-" + task), task) for task in tasks}


def make_tiny_package(
    out_dir: PathLike,
    tasks: Iterable[str] = ("caption", "match", "answer"),
    checkpoints_root: Optional[PathLike] = None,
    name: str = "tiny",
) -> Path:
    """Tiny checkpoints (next to `out_dir` unless `checkpoints_root`) exported into a package at `out_dir`."""
    from blip.export.api import export_package

    out_dir = Path(out_dir)
    root = Path(checkpoints_root) if checkpoints_root else out_dir.parent / (out_dir.name + "-checkpoints")
    folders = make_tiny_checkpoints(root, tasks)
    with one_torch_thread():
        return export_package(out_dir, name=name, **{task: folders[task] for task in folders})


def checkpoints_of(package_dir: PathLike) -> Dict[str, Path]:
    """{task: checkpoint folder} a package was exported from (its manifest's source.checkpoints)."""
    import yaml

    with open(Path(package_dir) / "manifest.yaml", encoding="utf-8") as handle:
        source = yaml.safe_load(handle)["source"]
    return {task: Path(folder) for task, folder in source["checkpoints"].items()}
