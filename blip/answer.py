"""Visual question answering: vision once, all questions encoded in one batch, batched greedy decode."""
from typing import Dict, List, Mapping

import numpy as np

from blip.decoding import greedy_decode
from blip.match import static_text_length
from blip.task import AnswerApi, SplitTask, batches, static_batch


class Answerer(AnswerApi, SplitTask):
    """The answer task of a package on one runtime. Not thread-safe: one per worker thread.

    settings: max_length (answer tokens, bos included; default 10), min_length (default 1),
    max_text_length (question tokens; default 35), bos/eos/pad_token_id (default: tokenizer's).
    Questions are padded to the longest and the decoder's cross-attention ignores the padding;
    transformers attends to every question position, which agrees when nothing is padded.
    """

    task = "answer"

    def _configure(self) -> None:
        self._question = self._graphs["question"]
        self._init = self._graphs["decoder_init"]
        self._step = self._graphs["decoder_step"]
        s = self.settings
        self.max_length = int(s.get("max_length", 10))
        self.min_length = int(s.get("min_length", 1))
        self.max_text_length = int(s.get("max_text_length", 35))
        self._generation_ids()
        self._pad_to = static_text_length(self._question)
        self._batch = static_batch(self._question)

    def answer_ids_from_embeds(self, image_embeds: np.ndarray, questions: Mapping[str, str]) -> Dict[str, List[int]]:
        """Generated answer ids (bos excluded, eos included when it came) per question id: all
        questions in one batch (or in groups of the batch a static graph fixes)."""
        out: Dict[str, List[int]] = {}
        for keys, texts in batches(questions, self._batch):
            ids, mask = self.tokenizer.encode_batch(texts, self.max_text_length, self._pad_to)
            feeds = {"input_ids": ids, "attention_mask": mask, "image_embeds": image_embeds}
            states = self._question.run(feeds)["question_states"]
            cross_kv = self._init.run({"encoder_states": states})["cross_kv"]
            rows = greedy_decode(
                self._step, cross_kv, mask, [self.bos_id], self.max_length, self.min_length, self.eos_id, self.pad_id
            )
            out.update(zip(keys, rows))
        return out

    def text(self, ids: List[int]) -> str:
        """The answer text of generated ids."""
        return self.tokenizer.decode(ids).strip()
