"""Visual question answering: vision once, all questions encoded in one batch, batched greedy decode."""
from typing import Any, Dict, List, Mapping, Optional, Tuple

import numpy as np

from blip.decoding import greedy_decode
from blip.match import static_text_length
from blip.package import ModelPackage, merged_settings, open_task
from blip.preprocess import preprocess
from blip.runtime.base import GraphLoader, Runtime
from blip.tokenizer import Tokenizer


class Answerer:
    """The answer task of a package on one runtime. Not thread-safe: one per worker thread.

    settings: max_length (answer tokens, bos included; default 10), min_length (default 1),
    max_text_length (question tokens; default 35), bos/eos/pad_token_id (default: tokenizer's).
    Questions are padded to the longest and the decoder's cross-attention ignores the padding;
    transformers attends to every question position, which agrees when nothing is padded.
    """

    task = "answer"

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
        self._question = graphs["question"]
        self._init = graphs["decoder_init"]
        self._step = graphs["decoder_step"]
        self.tokenizer = tokenizer or package.tokenizer()
        tok = self.tokenizer
        s = merged_settings(self.spec, settings_override)
        self.max_length = int(s.get("max_length", 10))
        self.min_length = int(s.get("min_length", 1))
        self.max_text_length = int(s.get("max_text_length", 35))
        self.bos_id = int(s.get("bos_token_id", tok.bos_id))
        self.eos_id = int(s.get("eos_token_id", tok.sep_id))
        self.pad_id = int(s.get("pad_token_id", tok.pad_id))
        self._pad_to = static_text_length(self._question)

    def embed(self, frame: np.ndarray) -> np.ndarray:
        """image_embeds [1,N,D] of a BGR frame."""
        return self.embed_pixels(
            preprocess(frame, self.spec.image_size, self._pp.mean, self._pp.std, self._pp.interpolation)
        )

    def embed_pixels(self, pixel_values: np.ndarray) -> np.ndarray:
        """image_embeds [1,N,D] of preprocessed pixel values [1,3,size,size]."""
        return self._vision.run({"pixel_values": pixel_values})["image_embeds"]

    def answer_ids_from_embeds(self, image_embeds: np.ndarray, questions: Mapping[str, str]) -> Dict[str, List[int]]:
        """Generated answer ids (bos excluded, eos included when it came) per question id."""
        if not questions:
            return {}
        keys = list(questions)
        ids, mask = self.tokenizer.encode_batch([questions[k] for k in keys], self.max_text_length, self._pad_to)
        feeds = {"input_ids": ids, "attention_mask": mask, "image_embeds": image_embeds}
        states = self._question.run(feeds)["question_states"]
        cross_kv = self._init.run({"encoder_states": states})["cross_kv"]
        rows = greedy_decode(
            self._step, cross_kv, mask, [self.bos_id], self.max_length, self.min_length, self.eos_id, self.pad_id
        )
        return dict(zip(keys, rows))

    def answer_ids(self, frame: np.ndarray, questions: Mapping[str, str]) -> Dict[str, List[int]]:
        """Generated answer ids per question id for a BGR frame (vision runs once)."""
        if not questions:
            return {}
        return self.answer_ids_from_embeds(self.embed(frame), questions)

    def answer_ids_from_pixels(self, pixel_values: np.ndarray, questions: Mapping[str, str]) -> Dict[str, List[int]]:
        """Generated answer ids for preprocessed pixel values (parity tests)."""
        return self.answer_ids_from_embeds(self.embed_pixels(pixel_values), questions)

    def text(self, ids: List[int]) -> str:
        """The answer text of generated ids."""
        return self.tokenizer.decode(ids).strip()

    def answer_from_embeds(self, image_embeds: np.ndarray, questions: Mapping[str, str]) -> Dict[str, str]:
        """Answer text per question id for an image_embeds the caller already has."""
        return {k: self.text(v) for k, v in self.answer_ids_from_embeds(image_embeds, questions).items()}

    def answer(self, frame: np.ndarray, questions: Mapping[str, str]) -> Dict[str, str]:
        """Answer text per question id for a BGR frame."""
        return {k: self.text(v) for k, v in self.answer_ids(frame, questions).items()}

    def answer_from_pixels(self, pixel_values: np.ndarray, questions: Mapping[str, str]) -> Dict[str, str]:
        """Answer text per question id for preprocessed pixel values (parity tests)."""
        return {k: self.text(v) for k, v in self.answer_ids_from_pixels(pixel_values, questions).items()}
