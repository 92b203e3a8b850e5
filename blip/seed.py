"""Layout `seed`: the sophon-demo BLIP bmodels as published, run the way the sample runs them.

Contract: reference/seed-blip.md §2-§5. Per task:
- caption: one `blip_cap` call per frame (ViT and the whole greedy loop are inside the graph); the
  ids are decoded as the sample does: skip special tokens, then strip the prompt "a picture of ".
- match: one `blip_itm` call per prompt; the graph re-runs the ViT for every prompt (slow by design,
  that is what the published file does) and outputs softmax(itm)[:,1] already.
- answer: `blip_vqa_venc` once per frame, then per question `blip_vqa_tenc` + `blip_vqa_tdec`
  (greedy loop inside the graph).
Texts are tokenized to the graph's fixed length (35) with `[CLS]` as their first token, as the
published sample feeds them; the seed exporter and original BLIP put `[ENC]` there for VQA, the
sample does not (seed-blip.md §3), and we follow the sample.

The classes offer the split task classes' entry points (`caption`, `scores`, `answer`, `embed`,
`embed_pixels`, ...) so one engine can drive either layout; `embed_key` says which tasks can share
one `embed` result of a frame. For caption and match that result is the preprocessed pixel values,
because their graphs take pixels (the ViT runs inside): they say so with `embeds_are_pixels` and
take it through `caption_ids_from_pixels` / `scores_from_pixels`, never a `*_from_embeds` name.
The answer task has real image embeddings (`blip_vqa_venc`) and keeps `answer_ids_from_embeds`.
"""
import logging
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Sequence, Tuple

import numpy as np

from blip.errors import PackageError
from blip.graphs import LAYOUT_SEED
from blip.preprocess import preprocess
from blip.runtime.base import Graph
from blip.task import AnswerApi, CaptionApi, MatchApi, TaskBase

log = logging.getLogger(__name__)

DEFAULT_PROMPT = "a picture of "
ONNX_OUTPUT = "output"
"""Output name of the seed's ONNX files (onnx.zip); bmodels rename it after the last op."""


@dataclass(frozen=True)
class SeedGraph:
    """One published graph: name (sail graph = `--model_name`), inputs with ranks, bmodel output name."""

    graph: str
    task: str
    inputs: Tuple[Tuple[str, int], ...]
    output: str
    tokens: bool = False


SEED_GRAPHS: Dict[str, SeedGraph] = {
    "cap": SeedGraph("blip_cap", "caption", (("pixel_values", 4),), "output_Concat", True),
    "itm": SeedGraph("blip_itm", "match", (("pixel_values", 4), ("input_ids", 2), ("attention_mask", 2)), "output_Gather"),
    "venc": SeedGraph("blip_vqa_venc", "answer", (("pixel_values", 4),), "output_LayerNormalization"),
    "tenc": SeedGraph(
        "blip_vqa_tenc", "answer", (("image_embeds", 3), ("input_ids", 2), ("attention_mask", 2)), "output_LayerNormalization"
    ),
    "tdec": SeedGraph("blip_vqa_tdec", "answer", (("question_states", 3),), "output_Concat", True),
}
"""role (manifest) -> graph contract (seed-blip.md §2)."""


def check_seed_graph(package: str, task: str, role: str, graph: Graph) -> str:
    """Check `graph` against the role's contract; returns the key of its single output."""
    want = SEED_GRAPHS[role]
    where = "package %s: %s (task %s, role %s)" % (package, getattr(graph, "path", role), task, role)
    for name, rank in want.inputs:
        spec = graph.inputs.get(name)
        if spec is None:
            raise PackageError("%s: missing input %r (graph has: %s)" % (where, name, ", ".join(sorted(graph.inputs))))
        if len(spec.shape) != rank or any(d is None for d in spec.shape):
            raise PackageError("%s: input %r must have %d static dims, has %s" % (where, name, rank, spec.shape))
    extra = sorted(set(graph.inputs) - {name for name, _ in want.inputs})
    if extra:
        raise PackageError("%s: unexpected input(s) %s" % (where, ", ".join(extra)))
    if len(graph.outputs) != 1:
        raise PackageError("%s: a seed graph has one output, this one has %s" % (where, ", ".join(graph.outputs) or "none"))
    key = next(iter(graph.outputs))
    if key not in (want.output, ONNX_OUTPUT):
        log.info("%s: output is named %s (expected %s or %s); using it", where, key, want.output, ONNX_OUTPUT)
    return key


def cut_at_eos(ids: Sequence[int], eos_id: int) -> List[int]:
    """Ids up to and including the first eos (the graph pads after it)."""
    out: List[int] = []
    for token in ids:
        out.append(int(token))
        if token == eos_id:
            break
    return out


class _SeedTask(TaskBase):
    """Loads and checks a seed task's graphs; the three task classes below build on it."""

    layouts = (LAYOUT_SEED,)

    def _prepare(self) -> None:
        self._out = {role: check_seed_graph(self.spec.package, self.task, role, g) for role, g in self._graphs.items()}
        self.eos_id = int(self.settings.get("eos_token_id", self.tokenizer.sep_id))

    def _image_size(self, role: str) -> int:
        """The graph's pixel size, which must be the manifest's image_size."""
        shape = self._graphs[role].inputs["pixel_values"].shape
        if shape[0] != 1 or shape[1] != 3 or shape[2] != shape[3] or shape[2] != self.spec.image_size:
            raise PackageError(
                "package %s: task %s: %s takes pixel_values %s, the manifest says image_size %d"
                % (self.spec.package, self.task, self.spec.graphs[role].path, shape, self.spec.image_size)
            )
        return int(shape[2])

    def _text_length(self, role: str) -> int:
        return int(self._graphs[role].inputs["input_ids"].shape[1])

    def _text_feeds(self, text: str, length: int) -> Tuple[np.ndarray, np.ndarray]:
        """[CLS] text [SEP] padded to the graph's fixed length (the sample's padding='max_length')."""
        row = self.tokenizer.encode(text, length)
        ids = np.full((1, length), self.tokenizer.pad_id, dtype=np.int64)
        mask = np.zeros((1, length), dtype=np.int64)
        ids[0, : len(row)] = row
        mask[0, : len(row)] = 1
        return ids, mask

    def _run(self, role: str, feeds: Mapping[str, np.ndarray]) -> np.ndarray:
        out = np.asarray(self._graphs[role].run(feeds)[self._out[role]])
        if SEED_GRAPHS[role].tokens and out.dtype.kind == "f":
            out = np.rint(out)
        return out.astype(np.int64) if SEED_GRAPHS[role].tokens else out

    def pixels(self, frame: np.ndarray) -> np.ndarray:
        """Preprocessed pixel values [1,3,size,size] of a BGR frame (size = the manifest's)."""
        pp = self._pp
        return preprocess(frame, self.spec.image_size, pp.mean, pp.std, pp.interpolation)


class _PixelTask(_SeedTask):
    """caption and match: their graphs take pixels, so what `embed` shares is the pixel values."""

    role = ""
    embeds_are_pixels = True
    """Engine.infer hands `embed`'s result to the *_from_pixels methods."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        size = self._image_size(self.role)
        pp = self._pp
        self.embed_key: Tuple[Any, ...] = ("pixels", size, tuple(pp.mean), tuple(pp.std), pp.interpolation)

    def embed(self, frame: np.ndarray) -> np.ndarray:
        """The pixel values the graph takes (its ViT runs inside the graph)."""
        return self.pixels(frame)

    def embed_pixels(self, pixel_values: np.ndarray) -> np.ndarray:
        return pixel_values


class SeedCaptioner(CaptionApi, _PixelTask):
    """Caption with `blip_cap`: one call per frame; settings: prompt (what the graph starts from)."""

    task = "caption"
    role = "cap"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.prompt = str(self.settings.get("prompt", DEFAULT_PROMPT))
        bos = int(self.settings.get("bos_token_id", self.tokenizer.bos_id))
        # the prefix the exporter baked in: "[DEC] a picture of" (seed-blip.md §3)
        self.prefix_ids = [bos] + self.tokenizer.encode(self.prompt, 512)[1:-1] if self.prompt.strip() else [bos]

    def caption_ids(self, frame: np.ndarray) -> List[int]:
        """Generated ids (prompt excluded, eos included when it came) for a BGR frame."""
        return self.caption_ids_from_pixels(self.pixels(frame))

    def caption_ids_from_pixels(self, pixel_values: np.ndarray) -> List[int]:
        """Generated ids after the prompt, eos included when it came."""
        row = [int(t) for t in self._run("cap", {"pixel_values": pixel_values})[0]]
        n = len(self.prefix_ids)
        if row[:n] != self.prefix_ids:
            log.warning("%s starts with %s, not the prompt %r; keeping the whole row", self.spec.graphs["cap"].path, row[:n], self.prompt)
            n = 0
        return cut_at_eos(row[n:], self.eos_id)

    def text(self, ids: List[int]) -> str:
        """The sample's decoding: decode prompt + ids without special tokens, strip the prompt."""
        caption = self.tokenizer.decode(self.prefix_ids + list(ids))
        if self.prompt.strip() and caption.startswith(self.prompt.strip()):
            caption = caption[len(self.prompt):]  # the sample's caption[13:], even if "##s" joined "of"
        return caption.strip()

class SeedMatcher(MatchApi, _PixelTask):
    """Prompt matching with `blip_itm`: one call per prompt (the graph holds image and one text)."""

    task = "match"
    role = "itm"

    def scores(self, frame: np.ndarray, prompts: Mapping[str, str]) -> Dict[str, float]:
        """Match probability in [0,1] of each prompt id for a BGR frame."""
        return self.scores_from_pixels(self.pixels(frame), prompts) if prompts else {}

    def scores_from_pixels(self, pixel_values: np.ndarray, prompts: Mapping[str, str]) -> Dict[str, float]:
        """Match probability in [0,1] of each prompt id (already softmax[:,1] inside the graph)."""
        length = self._text_length("itm")
        scores: Dict[str, float] = {}
        for key, text in prompts.items():
            ids, mask = self._text_feeds(text, length)
            out = self._run("itm", {"pixel_values": pixel_values, "input_ids": ids, "attention_mask": mask})
            scores[key] = float(out.reshape(-1)[0])
        return scores

class SeedAnswerer(AnswerApi, _SeedTask):
    """VQA with venc once per frame, then tenc + tdec per question."""

    task = "answer"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._image_size("venc")
        self.embed_key: Tuple[Any, ...] = ("venc", self.spec.graphs["venc"].sha256, self.spec.image_size)

    def embed(self, frame: np.ndarray) -> np.ndarray:
        """image_embeds [1,N,D] from blip_vqa_venc."""
        return self.embed_pixels(self.pixels(frame))

    def embed_pixels(self, pixel_values: np.ndarray) -> np.ndarray:
        return self._run("venc", {"pixel_values": pixel_values})

    def answer_ids_from_embeds(self, image_embeds: np.ndarray, questions: Mapping[str, str]) -> Dict[str, List[int]]:
        """Answer ids per question id (bos dropped, eos included when it came)."""
        length = self._text_length("tenc")
        answers: Dict[str, List[int]] = {}
        for key, text in questions.items():
            ids, mask = self._text_feeds(text, length)
            states = self._run("tenc", {"image_embeds": image_embeds, "input_ids": ids, "attention_mask": mask})
            row = self._run("tdec", {"question_states": states})[0]
            answers[key] = cut_at_eos(row[1:], self.eos_id)
        return answers

    def text(self, ids: List[int]) -> str:
        """decode(ids, skip_special_tokens=True), as the sample."""
        return self.tokenizer.decode(ids).strip()



SEED_TASKS = {"caption": SeedCaptioner, "match": SeedMatcher, "answer": SeedAnswerer}
"""task -> class, for the engine's dispatch on `TaskSpec.layout == "seed"`."""
