"""Shared helpers of the parity tests: frames, pixel values as our preprocess makes them, HF models."""
from pathlib import Path
from typing import Any, List

import numpy as np

MARGIN = 1e-3  # top-2 logit gap every greedy step must have for exact-id comparisons to be fair


def random_frames(count: int, seed: int) -> List[np.ndarray]:
    """BGR uint8 frames of varied sizes: smooth colour fields plus noise, like small camera frames."""
    rng = np.random.default_rng(seed)
    frames = []
    for _ in range(count):
        h, w = int(rng.integers(48, 120)), int(rng.integers(48, 160))
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        base = rng.uniform(0, 255, 3) + rng.uniform(-2, 2, 3) * xx[..., None] + rng.uniform(-2, 2, 3) * yy[..., None]
        frame = base + rng.normal(0, 25, (h, w, 3))
        frames.append(np.clip(frame, 0, 255).astype(np.uint8))
    return frames


def pixels(package: Any, task: str, frame: np.ndarray) -> np.ndarray:
    """[1,3,s,s] float32 exactly as our runtime preprocesses `frame` for `task`."""
    from blip.preprocess import preprocess

    pp = package.preprocess
    return preprocess(frame, package.task(task).image_size, pp.mean, pp.std, pp.interpolation)


def hf_model(class_name: str, folder: Path) -> Any:
    import transformers

    return getattr(transformers, class_name).from_pretrained(str(folder)).eval()


def hf_tokenizer(folder: Path) -> Any:
    from transformers import BertTokenizerFast

    return BertTokenizerFast.from_pretrained(str(folder))


def min_margin(scores: Any) -> float:
    """Smallest top-1 minus top-2 gap over generate's processed per-step scores (all rows)."""
    import torch

    stacked = torch.stack(list(scores))  # [steps, B, V]
    top2 = stacked.topk(2, dim=-1).values
    return float((top2[..., 0] - top2[..., 1]).min())
