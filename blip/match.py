"""Prompt matching: vision once per frame, every prompt scored against it in one `text` call."""
from typing import Any, Dict, Mapping, Optional

import numpy as np

from blip.runtime.base import static_dim
from blip.task import MatchApi, SplitTask, batches, static_batch


def static_text_length(graph: Any) -> Optional[int]:
    """The text length T a graph fixes for `input_ids` [P,T], or None when it is dynamic."""
    return static_dim(graph, "input_ids", 1, rank=2)


class Matcher(MatchApi, SplitTask):
    """The match task (ITM head probability) of a package on one runtime. One per worker thread.

    settings: max_text_length (tokens, [CLS]/[SEP] included; default 35).
    """

    task = "match"

    def _configure(self) -> None:
        self._text = self._graphs["text"]
        s = self.settings
        self.max_text_length = int(s.get("max_text_length", 35))
        self._pad_to = static_text_length(self._text)
        self._batch = static_batch(self._text)

    def scores_from_embeds(self, image_embeds: np.ndarray, prompts: Mapping[str, str]) -> Dict[str, float]:
        """Match probability in [0,1] of each prompt id: all prompts in one graph call (or in groups
        of the batch a static graph fixes)."""
        out: Dict[str, float] = {}
        for keys, texts in batches(prompts, self._batch):
            ids, mask = self.tokenizer.encode_batch(texts, self.max_text_length, self._pad_to)
            feeds = {"input_ids": ids, "attention_mask": mask, "image_embeds": image_embeds}
            scores = self._text.run(feeds)["scores"].reshape(-1)
            out.update((k, float(v)) for k, v in zip(keys, scores))
        return out
