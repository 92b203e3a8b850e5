"""Captioning: vision once, then greedy decoding from the prompt "[DEC] a picture of"."""
from typing import List

import numpy as np

from blip.decoding import greedy_decode
from blip.task import CaptionApi, SplitTask

DEFAULT_PROMPT = "a picture of "


class Captioner(CaptionApi, SplitTask):
    """The caption task of a package on one runtime. Not thread-safe: one per worker thread.

    settings (manifest, then `settings_override`): prompt, max_length (prompt included),
    min_length, bos_token_id, eos_token_id, pad_token_id; ids default to the tokenizer's.
    """

    task = "caption"

    def _configure(self) -> None:
        self._init = self._graphs["decoder_init"]
        self._step = self._graphs["decoder_step"]
        s = self.settings
        self.prompt = str(s.get("prompt", DEFAULT_PROMPT))
        self.max_length = int(s.get("max_length", 20))
        self.min_length = int(s.get("min_length", 0))
        self._generation_ids()
        self.prefix_ids = self._prefix()

    def _prefix(self) -> List[int]:
        """transformers' convention: tokenize "[CLS] prompt [SEP]", put bos first, drop the [SEP]."""
        if not self.prompt.strip():
            return [self.bos_id]
        ids = self.tokenizer.encode(self.prompt, 512)
        return [self.bos_id] + ids[1:-1]

    def caption_ids_from_embeds(self, image_embeds: np.ndarray) -> List[int]:
        """Generated ids (prompt excluded, eos included when it came) for one image."""
        cross_kv = self._init.run({"encoder_states": image_embeds})["cross_kv"]
        mask = np.ones(image_embeds.shape[:2], dtype=np.float32)
        rows = greedy_decode(
            self._step, cross_kv, mask, self.prefix_ids, self.max_length, self.min_length, self.eos_id, self.pad_id
        )
        return rows[0]

    def text(self, ids: List[int]) -> str:
        """The caption text of generated ids (the prompt is not part of it)."""
        return self.tokenizer.decode(ids).strip()
