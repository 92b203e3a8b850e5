"""What the three split-layout tasks share: opening their graphs, the tokenizer, the merged
settings, and the vision step (a BGR frame -> image_embeds) that `Engine.infer` shares across
tasks with the same vision graph."""
from typing import Any, Dict, Iterator, List, Mapping, Optional, Tuple

import numpy as np

from blip.graphs import LAYOUT_SPLIT
from blip.package import ModelPackage, merged_settings, open_task
from blip.preprocess import preprocess
from blip.runtime.base import GraphLoader, Runtime, static_dim
from blip.tokenizer import Tokenizer


def static_batch(graph: Any) -> Optional[int]:
    """The batch size a graph fixes for `input_ids` [B,T] (static TPU bmodels), or None when dynamic."""
    return static_dim(graph, "input_ids", 0)


def batches(texts: Mapping[str, str], size: Optional[int]) -> Iterator[Tuple[List[str], List[str]]]:
    """(ids, texts) in groups a graph with a fixed batch `size` takes; the last group is padded by
    repeating its last text (the caller keeps only the first len(ids) results). None: one group."""
    keys = list(texts)
    step = size or max(1, len(keys))
    for start in range(0, len(keys), step):
        group = keys[start:start + step]
        values = [texts[k] for k in group]
        if size:
            values += [values[-1]] * (size - len(values))
        yield group, values


class TaskBase:
    """What every task class of every layout does first: open and verify its graphs, take the
    preprocessing, the tokenizer and the merged settings. Not thread-safe: one per worker thread.
    `_prepare` is the layout's hook, `_configure` the task's."""

    task = ""
    layouts: Tuple[str, ...] = (LAYOUT_SPLIT,)

    def __init__(
        self,
        package: ModelPackage,
        runtime: Runtime,
        loader: Optional[GraphLoader] = None,
        settings_override: Optional[Mapping[str, Any]] = None,
        tokenizer: Optional[Tokenizer] = None,
    ) -> None:
        self.spec, self._graphs = open_task(package, runtime, self.task, loader, layouts=self.layouts)
        self._pp = package.preprocess
        self.tokenizer = tokenizer or package.tokenizer()
        self.settings = merged_settings(self.spec, settings_override)
        self._prepare()
        self._configure()

    def _prepare(self) -> None:
        """The layout's common set-up (after graphs, tokenizer and settings exist)."""

    def _configure(self) -> None:
        """Subclasses pick their graphs and settings here."""


class SplitTask(TaskBase):
    """Base of Captioner, Matcher and Answerer (layout split)."""

    def _prepare(self) -> None:
        # tasks with equal keys compute the same image_embeds for a frame (Engine.infer shares it)
        self.embed_key: Tuple[Any, ...] = ("vision", self.spec.graphs["vision"].sha256, self.spec.image_size)
        self._vision = self._graphs["vision"]

    def _generation_ids(self) -> None:
        """bos / eos / pad ids of a decoding task: the checkpoint's settings, else the tokenizer's."""
        tok, s = self.tokenizer, self.settings
        self.bos_id = int(s.get("bos_token_id", tok.bos_id))
        self.eos_id = int(s.get("eos_token_id", tok.sep_id))
        self.pad_id = int(s.get("pad_token_id", tok.pad_id))

    def embed(self, frame: np.ndarray) -> np.ndarray:
        """image_embeds [1,N,D] of a BGR frame."""
        return self.embed_pixels(
            preprocess(frame, self.spec.image_size, self._pp.mean, self._pp.std, self._pp.interpolation)
        )

    def embed_pixels(self, pixel_values: np.ndarray) -> np.ndarray:
        """image_embeds [1,N,D] of preprocessed pixel values [1,3,size,size]."""
        return self._vision.run({"pixel_values": pixel_values})["image_embeds"]


class CaptionApi:
    """The caption entry points, for any layout that provides `embed`, `embed_pixels`,
    `caption_ids_from_embeds` and `text` (split: image_embeds; seed: the graph takes pixels)."""

    def caption_ids(self, frame: np.ndarray) -> List[int]:
        """Generated ids (prompt excluded, eos included when it came) for a BGR frame."""
        return self.caption_ids_from_embeds(self.embed(frame))  # type: ignore[attr-defined]

    def caption_ids_from_pixels(self, pixel_values: np.ndarray) -> List[int]:
        return self.caption_ids_from_embeds(self.embed_pixels(pixel_values))  # type: ignore[attr-defined]

    def caption(self, frame: np.ndarray) -> str:
        """The caption of a BGR frame, without the prompt."""
        return self.text(self.caption_ids(frame))  # type: ignore[attr-defined]

    def caption_from_pixels(self, pixel_values: np.ndarray) -> str:
        return self.text(self.caption_ids_from_pixels(pixel_values))  # type: ignore[attr-defined]

    def caption_from_embeds(self, embeds: np.ndarray) -> str:
        """The caption from what `embed` returned (Engine.infer shares it across tasks)."""
        return self.text(self.caption_ids_from_embeds(embeds))  # type: ignore[attr-defined]


class MatchApi:
    """The match entry points over `embed`, `embed_pixels` and `scores_from_embeds`."""

    def scores(self, frame: np.ndarray, prompts: Mapping[str, str]) -> Dict[str, float]:
        """Match probability in [0,1] of each prompt id for a BGR frame (vision runs once)."""
        if not prompts:
            return {}
        return self.scores_from_embeds(self.embed(frame), prompts)  # type: ignore[attr-defined]

    def scores_from_pixels(self, pixel_values: np.ndarray, prompts: Mapping[str, str]) -> Dict[str, float]:
        return self.scores_from_embeds(self.embed_pixels(pixel_values), prompts)  # type: ignore[attr-defined]


class AnswerApi:
    """The answer entry points over `embed`, `embed_pixels`, `answer_ids_from_embeds` and `text`."""

    def answer_ids(self, frame: np.ndarray, questions: Mapping[str, str]) -> Dict[str, List[int]]:
        """Answer ids (bos excluded, eos included when it came) per question id for a BGR frame."""
        if not questions:
            return {}
        return self.answer_ids_from_embeds(self.embed(frame), questions)  # type: ignore[attr-defined]

    def answer_ids_from_pixels(self, pixel_values: np.ndarray, questions: Mapping[str, str]) -> Dict[str, List[int]]:
        return self.answer_ids_from_embeds(self.embed_pixels(pixel_values), questions)  # type: ignore[attr-defined]

    def answer_from_embeds(self, embeds: np.ndarray, questions: Mapping[str, str]) -> Dict[str, str]:
        ids = self.answer_ids_from_embeds(embeds, questions)  # type: ignore[attr-defined]
        return {k: self.text(v) for k, v in ids.items()}  # type: ignore[attr-defined]

    def answer(self, frame: np.ndarray, questions: Mapping[str, str]) -> Dict[str, str]:
        """Answer text per question id for a BGR frame."""
        return {k: self.text(v) for k, v in self.answer_ids(frame, questions).items()}  # type: ignore[attr-defined]

    def answer_from_pixels(self, pixel_values: np.ndarray, questions: Mapping[str, str]) -> Dict[str, str]:
        ids = self.answer_ids_from_pixels(pixel_values, questions)
        return {k: self.text(v) for k, v in ids.items()}  # type: ignore[attr-defined]
