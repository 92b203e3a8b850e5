"""One engine per worker thread: the requested tasks of a package on one runtime.

Tasks share one graph loader (a vision file used by two tasks is loaded once) and one tokenizer.
Each task's class follows its layout: `split` (caption.py, match.py, answer.py) or `seed`
(blip/seed.py, imported only for seed packages). `infer` runs a frame through several tasks and
computes each distinct image embedding only once, from pixel values a caller already has (e.g. made
by the decoder's device, daemon `preprocess: tpu`) where it has them for the task's image size.
"""
from dataclasses import dataclass, field, replace
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple

import numpy as np

from blip.answer import Answerer
from blip.caption import Captioner
from blip.errors import PackageError
from blip.graphs import LAYOUT_SEED, TASKS
from blip.match import Matcher
from blip.package import ModelPackage
from blip.runtime.base import GraphLoader, Runtime

SPLIT_TASKS = {"caption": Captioner, "match": Matcher, "answer": Answerer}


@dataclass(frozen=True)
class EngineResult:
    """What `Engine.infer` computed for one frame; tasks not asked for stay empty/None.

    caption:     caption text without the prompt
    caption_ids: its generated ids (eos included when it came)
    scores:      prompt id -> match probability in [0,1]
    answers:     question id -> answer text
    """

    caption: Optional[str] = None
    caption_ids: Tuple[int, ...] = ()
    scores: Dict[str, float] = field(default_factory=dict)
    answers: Dict[str, str] = field(default_factory=dict)


def task_class(package: ModelPackage, task: str) -> Any:
    """The class that runs `task` of `package`, chosen by the task's layout."""
    if package.task(task).layout == LAYOUT_SEED:
        from blip.seed import SEED_TASKS

        return SEED_TASKS[task]
    return SPLIT_TASKS[task]


class Engine:
    """Builds only the requested tasks; a task the package lacks is a PackageError at build time.

    `captioner`, `matcher`, `answerer` are the task objects (None when not requested); whatever
    their layout they offer caption()/scores()/answer() and the *_from_embeds forms.
    `settings_override` maps a task to settings laid over the manifest's (e.g. min_length).
    """

    def __init__(
        self,
        package: ModelPackage,
        runtime: Runtime,
        tasks: Sequence[str] = TASKS,
        settings_override: Optional[Mapping[str, Mapping[str, Any]]] = None,
    ) -> None:
        unknown = [t for t in tasks if t not in TASKS]
        if unknown:
            raise PackageError(
                "package %s: unknown task(s) %s (tasks are %s)" % (package.name, ", ".join(unknown), ", ".join(TASKS))
            )
        classes = {task: task_class(package, task) for task in tasks}  # a missing task fails here
        self.package = package
        self.runtime = runtime
        self.tasks = tuple(tasks)
        self._loader = GraphLoader(runtime)
        self.tokenizer = package.tokenizer()
        overrides = settings_override or {}
        shared = {"loader": self._loader, "tokenizer": self.tokenizer}
        try:
            built = {
                task: cls(package, runtime, settings_override=overrides.get(task), **shared)
                for task, cls in classes.items()
            }
        except BaseException:  # a later task failed to load: free the graphs (device memory) loaded so far
            self._loader.close()
            raise
        self.captioner: Optional[Any] = built.get("caption")
        self.matcher: Optional[Any] = built.get("match")
        self.answerer: Optional[Any] = built.get("answer")

    def infer(
        self,
        frame: np.ndarray,
        caption: bool = False,
        prompts: Optional[Mapping[str, str]] = None,
        questions: Optional[Mapping[str, str]] = None,
        pixels: Optional[Mapping[int, np.ndarray]] = None,
    ) -> EngineResult:
        """Run the asked tasks on one BGR frame; tasks with equal `embed_key` (same vision file and
        image size) reuse one embedding. Asking for a task the engine was not built with is an error.

        pixels: image size -> float32 [1,3,size,size] already preprocessed with the package's
        mean/std (blip/preprocess.py's contract); a task whose size is there uses them instead of
        preprocessing `frame` on the CPU."""
        embeds: Dict[Tuple[Any, ...], np.ndarray] = {}

        def embed(task: Any) -> np.ndarray:
            if task.embed_key not in embeds:
                given = pixels.get(task.spec.image_size) if pixels else None
                embeds[task.embed_key] = task.embed(frame) if given is None else task.embed_pixels(given)
            return embeds[task.embed_key]

        result = EngineResult()
        if caption:
            captioner = self._need(self.captioner, "caption")
            shared = embed(captioner)  # pixel values for tasks whose graph takes pixels (seed)
            pixel_task = getattr(captioner, "embeds_are_pixels", False)
            ids = captioner.caption_ids_from_pixels(shared) if pixel_task else captioner.caption_ids_from_embeds(shared)
            result = replace(result, caption=captioner.text(ids), caption_ids=tuple(ids))
        if prompts:
            matcher = self._need(self.matcher, "match")
            shared = embed(matcher)
            pixel_task = getattr(matcher, "embeds_are_pixels", False)
            scores = matcher.scores_from_pixels(shared, prompts) if pixel_task else matcher.scores_from_embeds(shared, prompts)
            result = replace(result, scores=scores)
        if questions:
            answerer = self._need(self.answerer, "answer")
            result = replace(result, answers=answerer.answer_from_embeds(embed(answerer), questions))
        return result

    def _need(self, task: Any, name: str) -> Any:
        if task is None:
            raise PackageError("package %s: engine was built without task %r" % (self.package.name, name))
        return task

    def close(self) -> None:
        """Release every graph; the engine cannot run afterwards."""
        self.captioner = self.matcher = self.answerer = None
        self._loader.close()

    def __enter__(self) -> "Engine":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
