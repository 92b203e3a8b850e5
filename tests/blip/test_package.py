"""Model package loading: every failure is one PackageError line naming the package and file."""
import os
import shutil

import pytest
import yaml

from blip.errors import PackageError
from blip.package import ModelPackage, open_task, verify_graph_io
from blip.runtime.base import Graph, TensorSpec
from tests.blip import tiny


@pytest.fixture
def pkg_dir(tiny_dir, tmp_path) -> str:
    """A private copy of the tiny package that a test may break."""
    return shutil.copytree(tiny_dir, str(tmp_path / "copy"))


def _edit_manifest(root: str, edit) -> None:
    path = os.path.join(root, "manifest.yaml")
    with open(path) as fh:
        doc = yaml.safe_load(fh)
    edit(doc)
    with open(path, "w") as fh:
        yaml.safe_dump(doc, fh)


def _one_line_error(root: str) -> str:
    with pytest.raises(PackageError) as info:
        ModelPackage.load(root)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_loads_tasks_settings_and_preprocess(package):
    assert package.name == "tiny"
    assert sorted(package.tasks) == ["answer", "caption", "match"]
    cap = package.task("caption")
    assert (cap.backend, cap.layout, cap.image_size) == ("onnxruntime", "split", 8)
    assert sorted(cap.graphs) == ["decoder_init", "decoder_step", "vision"]
    assert os.path.isabs(cap.graphs["vision"].path) and len(cap.graphs["vision"].sha256) == 64
    assert cap.settings["max_length"] == 12
    assert package.preprocess.mean == tuple(tiny.MEAN) and package.preprocess.interpolation == "bicubic"
    assert package.tokenizer().bos_id == len(tiny.VOCAB)


def test_missing_task_lists_the_tasks_it_has(tmp_path, weights):
    root = tiny.make_package(str(tmp_path / "two"), weights, tasks=("caption", "match"))
    with pytest.raises(PackageError, match=r"package tiny has no task 'answer' \(it has: caption, match\)"):
        ModelPackage.load(root).task("answer")


def test_missing_manifest(tmp_path):
    (tmp_path / "empty").mkdir()
    assert "manifest.yaml not found" in _one_line_error(str(tmp_path / "empty"))


def test_missing_folder(tmp_path):
    assert "folder not found" in _one_line_error(str(tmp_path / "nope"))


def test_bad_yaml_names_the_line(pkg_dir):
    with open(os.path.join(pkg_dir, "manifest.yaml"), "a") as fh:
        fh.write("tasks: [unclosed\n")
    message = _one_line_error(pkg_dir)
    assert "manifest.yaml" in message and "invalid YAML" in message and "line" in message


def test_missing_graph_file(pkg_dir):
    os.remove(os.path.join(pkg_dir, "text.onnx"))
    message = _one_line_error(pkg_dir)
    assert "package tiny" in message and "text.onnx" in message and "not found" in message


def test_checksum_mismatch(pkg_dir):
    with open(os.path.join(pkg_dir, "decoder_init.onnx"), "ab") as fh:
        fh.write(b"\0")
    message = _one_line_error(pkg_dir)
    assert "decoder_init.onnx" in message and "sha256 mismatch" in message


@pytest.mark.parametrize(
    "edit, expected",
    [
        (lambda d: d["tasks"]["caption"].update(backend="tensorrt"), "unknown backend 'tensorrt'"),
        (lambda d: d["tasks"]["match"].update(layout="fused"), "unknown layout 'fused'"),
        (lambda d: d["tasks"]["answer"]["graphs"].pop("question"), "needs graph role(s) question"),
        (lambda d: d["tasks"].update(describe=d["tasks"]["match"]), "task describe: unknown task"),
        (lambda d: d["tasks"]["caption"].update(image_size="big"), "image_size must be a positive integer"),
        (lambda d: d["preprocess"].update(std=[0.1, 0.2]), "preprocess.std must be a list of 3 numbers"),
        (lambda d: d.update(format=7), "format 7 is not supported"),
        (lambda d: d.update(tasks={}), "'tasks' must map"),
        (lambda d: d["tasks"]["match"]["graphs"]["text"].update(file="../x.onnx"), "inside the package"),
        (lambda d: d["tasks"]["match"]["graphs"]["text"].update(sha256="abc"), "64 hex digits"),
    ],
)
def test_manifest_errors(pkg_dir, edit, expected):
    _edit_manifest(pkg_dir, edit)
    message = _one_line_error(pkg_dir)
    assert message.startswith("package tiny") and expected in message


def test_missing_tokenizer_files(pkg_dir):
    os.remove(os.path.join(pkg_dir, "tokenizer", "vocab.txt"))
    assert "neither tokenizer.json nor vocab.txt" in _one_line_error(pkg_dir)


class _FakeGraph(Graph):
    def __init__(self, inputs, outputs):
        self.path = "fake.onnx"
        self.inputs = {n: TensorSpec(n, (None,) * r, "float32") for n, r in inputs.items()}
        self.outputs = {n: TensorSpec(n, (None,) * r, "float32") for n, r in outputs.items()}


def test_verify_graph_io_names_file_and_tensor(package):
    spec = package.task("match")
    verify_graph_io(spec, "vision", _FakeGraph({"pixel_values": 4}, {"image_embeds": 3}))
    with pytest.raises(PackageError, match=r"package tiny: .*vision\.onnx .*missing input tensor 'pixel_values'"):
        verify_graph_io(spec, "vision", _FakeGraph({"pixels": 4}, {"image_embeds": 3}))
    with pytest.raises(PackageError, match=r"output tensor 'image_embeds' has rank 2, the role needs 3"):
        verify_graph_io(spec, "vision", _FakeGraph({"pixel_values": 4}, {"image_embeds": 2}))


def test_open_task_checks_graph_io_with_the_runtime(pkg_dir, weights, runtime):
    # A text graph where the vision graph should be: right file, wrong tensors.
    shutil.copy(os.path.join(pkg_dir, "text.onnx"), os.path.join(pkg_dir, "vision.onnx"))
    _edit_manifest(pkg_dir, lambda d: [
        t["graphs"]["vision"].update(sha256=tiny.sha256(os.path.join(pkg_dir, "vision.onnx")))
        for t in d["tasks"].values()
    ])
    expected = r"vision\.onnx \(task match, role vision\): missing input tensor 'pixel_values'"
    with pytest.raises(PackageError, match=expected):
        open_task(ModelPackage.load(pkg_dir), runtime, "match")


def _to_seed_match(doc) -> None:
    match = doc["tasks"]["match"]
    match.update(layout="seed", graphs={"itm": match["graphs"]["text"]})


def test_open_task_refuses_other_layout_and_backend(pkg_dir, runtime):
    _edit_manifest(pkg_dir, _to_seed_match)
    _edit_manifest(pkg_dir, lambda d: d["tasks"]["caption"].update(backend="sail"))
    pkg = ModelPackage.load(pkg_dir)
    with pytest.raises(PackageError, match="task match has layout 'seed', which this runner does not run"):
        open_task(pkg, runtime, "match")
    with pytest.raises(PackageError, match="task caption is built for backend sail, but the runtime is onnxruntime"):
        open_task(pkg, runtime, "caption")
