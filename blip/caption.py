"""Captioning: vision once, then greedy decoding from the prompt "[DEC] a picture of"."""
from typing import Any, List, Mapping, Optional, Tuple

import numpy as np

from blip.decoding import greedy_decode
from blip.package import ModelPackage, merged_settings, open_task
from blip.preprocess import preprocess
from blip.runtime.base import GraphLoader, Runtime
from blip.tokenizer import Tokenizer

DEFAULT_PROMPT = "a picture of "


class Captioner:
    """The caption task of a package on one runtime. Not thread-safe: one per worker thread.

    settings (manifest, then `settings_override`): prompt, max_length (prompt included),
    min_length, bos_token_id, eos_token_id, pad_token_id; ids default to the tokenizer's.
    """

    task = "caption"

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
        self._init = graphs["decoder_init"]
        self._step = graphs["decoder_step"]
        self.tokenizer = tokenizer or package.tokenizer()
        s = merged_settings(self.spec, settings_override)
        tok = self.tokenizer
        self.prompt = str(s.get("prompt", DEFAULT_PROMPT))
        self.max_length = int(s.get("max_length", 20))
        self.min_length = int(s.get("min_length", 0))
        self.bos_id = int(s.get("bos_token_id", tok.bos_id))
        self.eos_id = int(s.get("eos_token_id", tok.sep_id))
        self.pad_id = int(s.get("pad_token_id", tok.pad_id))
        self.prefix_ids = self._prefix()

    def _prefix(self) -> List[int]:
        """transformers' convention: tokenize "[CLS] prompt [SEP]", put bos first, drop the [SEP]."""
        if not self.prompt.strip():
            return [self.bos_id]
        ids = self.tokenizer.encode(self.prompt, 512)
        return [self.bos_id] + ids[1:-1]

    def embed(self, frame: np.ndarray) -> np.ndarray:
        """image_embeds [1,N,D] of a BGR frame."""
        return self.embed_pixels(
            preprocess(frame, self.spec.image_size, self._pp.mean, self._pp.std, self._pp.interpolation)
        )

    def embed_pixels(self, pixel_values: np.ndarray) -> np.ndarray:
        """image_embeds [1,N,D] of preprocessed pixel values [1,3,size,size]."""
        return self._vision.run({"pixel_values": pixel_values})["image_embeds"]

    def caption_ids_from_embeds(self, image_embeds: np.ndarray) -> List[int]:
        """Generated ids (prompt excluded, eos included when it came) for one image."""
        cross_kv = self._init.run({"encoder_states": image_embeds})["cross_kv"]
        mask = np.ones(image_embeds.shape[:2], dtype=np.float32)
        rows = greedy_decode(
            self._step, cross_kv, mask, self.prefix_ids, self.max_length, self.min_length, self.eos_id, self.pad_id
        )
        return rows[0]

    def caption_ids(self, frame: np.ndarray) -> List[int]:
        """Generated ids for a BGR frame."""
        return self.caption_ids_from_embeds(self.embed(frame))

    def caption_ids_from_pixels(self, pixel_values: np.ndarray) -> List[int]:
        """Generated ids for preprocessed pixel values (parity tests feed transformers' pixels)."""
        return self.caption_ids_from_embeds(self.embed_pixels(pixel_values))

    def text(self, ids: List[int]) -> str:
        """The caption text of generated ids (the prompt is not part of it)."""
        return self.tokenizer.decode(ids).strip()

    def caption(self, frame: np.ndarray) -> str:
        """The caption of a BGR frame, without the prompt."""
        return self.text(self.caption_ids(frame))

    def caption_from_pixels(self, pixel_values: np.ndarray) -> str:
        """The caption of preprocessed pixel values, without the prompt."""
        return self.text(self.caption_ids_from_pixels(pixel_values))

    def caption_from_embeds(self, image_embeds: np.ndarray) -> str:
        """The caption of an image_embeds the caller already has (shared vision encoder)."""
        return self.text(self.caption_ids_from_embeds(image_embeds))
