"""The three tasks and the engine on the toy ONNX graphs, against the cache-free numpy model."""
from collections import Counter

import numpy as np
import pytest

from blip.answer import Answerer
from blip.caption import Captioner
from blip.engine import Engine
from blip.errors import BackendError, PackageError
from blip.match import Matcher
from blip.package import ModelPackage
from blip.preprocess import preprocess
from blip.runtime.base import Graph, Runtime
from tests.blip import tiny

PROMPTS = {"car": "a red car on the street", "gate": "a person standing at the gate", "dog": "a dog"}
QUESTIONS = {"open": "is the gate open?", "dogs": "two dogs?", "car": "is there a blue car on the street?"}


class CountingRuntime(Runtime):
    """Wraps a runtime and counts graph runs per file name."""

    def __init__(self, inner: Runtime):
        self.inner, self.name, self.runs, self.closed = inner, inner.name, Counter(), []

    def load(self, path, graph_name=None):
        graph, outer = self.inner.load(path, graph_name), self

        class Counted(Graph):
            inputs, outputs = graph.inputs, graph.outputs

            def run(self, feeds):
                outer.runs[path.rsplit("/", 1)[-1]] += 1
                return graph.run(feeds)

            def close(self):
                outer.closed.append(path)

        Counted.path = path
        return Counted()


def _frame(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (40, 60, 3), dtype=np.uint8)


def _embeds(w: tiny.Weights, frame: np.ndarray) -> np.ndarray:
    return tiny.ref_vision(w, preprocess(frame, w.size, tiny.MEAN, tiny.STD))


@pytest.fixture(scope="module", params=[0, 3, 4, 7])
def seeded(request, tmp_path_factory):
    w = tiny.Weights(seed=request.param)
    root = tiny.make_package(str(tmp_path_factory.mktemp("seed") / "pkg"), w)
    return w, ModelPackage.load(root)


def test_caption_matches_reference(seeded, runtime):
    w, pkg = seeded
    cap = Captioner(pkg, runtime)
    assert cap.prefix_ids == [cap.bos_id, 6, 7, 8]  # "[DEC] a picture of"
    for seed in range(3):
        frame = _frame(seed)
        want = tiny.ref_generate(w, _embeds(w, frame)[0], cap.prefix_ids, 12, 5, 4)
        assert cap.caption_ids(frame) == want
        assert cap.caption(frame) == pkg.tokenizer().decode(want).strip()


def test_caption_from_pixels_and_static_cache(tmp_path, weights, runtime):
    pkg = ModelPackage.load(tiny.make_package(str(tmp_path / "static"), weights, tasks=("caption",), slots=12))
    cap = Captioner(pkg, runtime)
    pixels = preprocess(_frame(1), weights.size, tiny.MEAN, tiny.STD)
    want = tiny.ref_generate(weights, tiny.ref_vision(weights, pixels)[0], cap.prefix_ids, 12, 5, 4)
    assert cap.caption_ids_from_pixels(pixels) == want
    assert isinstance(cap.caption_from_pixels(pixels), str)


def test_settings_override_forces_length(seeded, runtime):
    w, pkg = seeded
    engine = Engine(pkg, runtime, tasks=("caption",), settings_override={"caption": {"min_length": 12}})
    ids = engine.captioner.caption_ids(_frame(0))
    assert len(ids) == 12 - 4 and 4 not in ids
    assert ids == tiny.ref_generate(w, _embeds(w, _frame(0))[0], [30, 6, 7, 8], 12, 12, 4)


def test_match_scores_match_reference(seeded, runtime):
    w, pkg = seeded
    matcher = Matcher(pkg, runtime)
    tok = pkg.tokenizer()
    frame = _frame(2)
    got = matcher.scores(frame, PROMPTS)
    assert list(got) == list(PROMPTS)
    for key, text in PROMPTS.items():
        ids = np.array([tok.encode(text, 35)])
        want = tiny.ref_scores(w, ids, np.ones_like(ids), _embeds(w, frame))[0]
        assert got[key] == pytest.approx(float(want), abs=1e-5)
    assert matcher.scores(frame, {}) == {}


def test_answers_batched_equal_one_by_one(seeded, runtime):
    w, pkg = seeded
    answerer = Answerer(pkg, runtime)
    tok = pkg.tokenizer()
    frame = _frame(0)
    got = answerer.answer_ids(frame, QUESTIONS)
    for key, text in QUESTIONS.items():
        ids = np.array([tok.encode(text, 35)])
        states = tiny.ref_states(w, ids, np.ones_like(ids), _embeds(w, frame))[0]
        assert got[key] == tiny.ref_generate(w, states, [tok.bos_id], 6, 1, 4), key
    texts = answerer.answer(frame, QUESTIONS)
    assert texts == {k: tok.decode(v).strip() for k, v in got.items()}


def test_vision_once_one_text_call_and_cached_tokens(package, runtime, monkeypatch):
    counting = CountingRuntime(runtime)
    matcher = Matcher(package, counting)
    calls = []
    real_encode = matcher.tokenizer.encode
    monkeypatch.setattr(matcher.tokenizer, "encode", lambda text, n: calls.append(text) or real_encode(text, n))
    matcher.scores(_frame(0), PROMPTS)
    matcher.scores(_frame(1), PROMPTS)
    assert counting.runs == {"vision.onnx": 2, "text.onnx": 2}
    assert sorted(calls) == sorted(PROMPTS.values())  # tokenized for the first frame only


def test_answer_runs_each_graph_once_per_frame(package, runtime):
    counting = CountingRuntime(runtime)
    Answerer(package, counting).answer(_frame(0), QUESTIONS)
    assert counting.runs["vision.onnx"] == counting.runs["question.onnx"] == counting.runs["decoder_init.onnx"] == 1
    assert 1 <= counting.runs["decoder_step.onnx"] <= 5  # one batched decode: max_length 6 - [DEC]


def test_engine_builds_only_requested_tasks(tmp_path, weights, runtime):
    pkg = ModelPackage.load(tiny.make_package(str(tmp_path / "two"), weights, tasks=("caption", "match")))
    engine = Engine(pkg, runtime, tasks=("match",))
    assert engine.captioner is None and engine.answerer is None and engine.matcher is not None
    with pytest.raises(PackageError, match=r"package tiny has no task 'answer' \(it has: caption, match\)"):
        Engine(pkg, runtime, tasks=("caption", "answer"))
    with pytest.raises(PackageError, match="unknown task"):
        Engine(pkg, runtime, tasks=("describe",))
    with pytest.raises(PackageError, match="built without task 'caption'"):
        engine.infer(_frame(0), caption=True)


def test_engine_infer_shares_the_vision_encoder(package, runtime):
    counting = CountingRuntime(runtime)
    engine = Engine(package, counting)
    frame = _frame(5)
    result = engine.infer(frame, caption=True, prompts=PROMPTS, questions=QUESTIONS)
    assert counting.runs["vision.onnx"] == 1  # one file serves all three tasks of the tiny package
    assert result.caption == engine.captioner.caption(frame)
    assert result.scores == pytest.approx(engine.matcher.scores(frame, PROMPTS))
    assert result.answers == engine.answerer.answer(frame, QUESTIONS)
    engine.close()
    assert len(counting.closed) == 5 and engine.captioner is None


def test_engine_that_fails_to_load_a_task_closes_the_graphs_it_loaded(package, runtime):
    counting = CountingRuntime(runtime)
    load = counting.load

    def failing(path, graph_name=None):
        if path.endswith("question.onnx"):
            raise BackendError("%s: cannot load" % path)
        return load(path, graph_name)

    counting.load = failing
    with pytest.raises(BackendError, match="question.onnx: cannot load"):
        Engine(package, counting)
    assert counting.closed and len(counting.closed) == len(set(counting.closed))


def test_bad_frame_is_an_image_error(package, runtime):
    from blip.errors import ImageError

    with pytest.raises(ImageError):
        Captioner(package, runtime).caption(np.zeros((0, 0, 3), np.uint8))


def test_graph_failure_is_a_backend_error(package, runtime):
    cap = Captioner(package, runtime)
    with pytest.raises(BackendError, match=r"vision\.onnx: onnxruntime failed"):
        cap.caption_from_pixels(np.zeros((1, 3, 5, 5), np.float32))


def test_layout_picks_the_task_class(tmp_path, weights):
    import yaml

    from blip.engine import task_class

    root = tiny.make_package(str(tmp_path / "seedish"), weights, tasks=("caption", "match"))
    manifest = tmp_path / "seedish" / "manifest.yaml"
    doc = yaml.safe_load(manifest.read_text())
    doc["tasks"]["match"].update(layout="seed", backend="sail", graphs={"itm": doc["tasks"]["match"]["graphs"]["text"]})
    manifest.write_text(yaml.safe_dump(doc))
    pkg = ModelPackage.load(root)
    assert task_class(pkg, "caption") is Captioner
    assert task_class(pkg, "match").__name__ == "SeedMatcher"
