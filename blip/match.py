"""Prompt matching: vision once per frame, every prompt scored against it in one `text` call."""
from typing import Any, Dict, Mapping, Optional, Tuple

import numpy as np

from blip.package import ModelPackage, merged_settings, open_task
from blip.preprocess import preprocess
from blip.runtime.base import GraphLoader, Runtime
from blip.tokenizer import Tokenizer


def static_text_length(graph: Any) -> Optional[int]:
    """The text length T a graph fixes for `input_ids` [P,T], or None when it is dynamic."""
    spec = graph.inputs.get("input_ids")
    if spec is None or len(spec.shape) != 2:
        return None
    return spec.shape[1]


class Matcher:
    """The match task (ITM head probability) of a package on one runtime. One per worker thread.

    settings: max_text_length (tokens, [CLS]/[SEP] included; default 35).
    """

    task = "match"

    def __init__(
        self,
        package: ModelPackage,
        runtime: Runtime,
        loader: Optional[GraphLoader] = None,
        settings_override: Optional[Mapping[str, Any]] = None,
        tokenizer: Optional[Tokenizer] = None,
    ) -> None:
        self.spec, graphs = open_task(package, runtime, self.task, loader)
        self._pp = package.preprocess
        # tasks with equal keys compute the same image_embeds for a frame (Engine.infer shares it)
        self.embed_key: Tuple[Any, ...] = ("vision", self.spec.graphs["vision"].sha256, self.spec.image_size)
        self._vision = graphs["vision"]
        self._text = graphs["text"]
        self.tokenizer = tokenizer or package.tokenizer()
        s = merged_settings(self.spec, settings_override)
        self.max_text_length = int(s.get("max_text_length", 35))
        self._pad_to = static_text_length(self._text)

    def embed(self, frame: np.ndarray) -> np.ndarray:
        """image_embeds [1,N,D] of a BGR frame."""
        return self.embed_pixels(
            preprocess(frame, self.spec.image_size, self._pp.mean, self._pp.std, self._pp.interpolation)
        )

    def embed_pixels(self, pixel_values: np.ndarray) -> np.ndarray:
        """image_embeds [1,N,D] of preprocessed pixel values [1,3,size,size]."""
        return self._vision.run({"pixel_values": pixel_values})["image_embeds"]

    def scores_from_embeds(self, image_embeds: np.ndarray, prompts: Mapping[str, str]) -> Dict[str, float]:
        """Match probability in [0,1] of each prompt id, all prompts in one graph call."""
        if not prompts:
            return {}
        keys = list(prompts)
        ids, mask = self.tokenizer.encode_batch([prompts[k] for k in keys], self.max_text_length, self._pad_to)
        feeds = {"input_ids": ids, "attention_mask": mask, "image_embeds": image_embeds}
        scores = self._text.run(feeds)["scores"].reshape(-1)
        return {k: float(v) for k, v in zip(keys, scores)}

    def scores(self, frame: np.ndarray, prompts: Mapping[str, str]) -> Dict[str, float]:
        """Match probability of each prompt id for a BGR frame (vision runs once)."""
        if not prompts:
            return {}
        return self.scores_from_embeds(self.embed(frame), prompts)

    def scores_from_pixels(self, pixel_values: np.ndarray, prompts: Mapping[str, str]) -> Dict[str, float]:
        """Match probabilities for preprocessed pixel values (parity tests)."""
        return self.scores_from_embeds(self.embed_pixels(pixel_values), prompts)
