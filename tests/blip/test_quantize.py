"""`blipd quantize` on the tiny BLIP package (tests/models.py): the int8 copy loads and runs with the
runtime unchanged, records what it chose, keeps float where the error bar fails, refuses bad input.

Speed is not asserted (benchmarks measure it): the tiny graphs are too small for int8 to win, so
the tests that need int8 graphs lower the speed bar to 0.
"""
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import yaml

from blip.errors import ImageError, PackageError
from blip.export import quantize
from blip.package import ModelPackage, file_sha256

ROOT = Path(__file__).resolve().parents[2]
QUANT_OPS = {"DynamicQuantizeLinear", "MatMulInteger", "QuantizeLinear", "DequantizeLinear", "ConvInteger"}


def calibration_npz(path: Path, package: ModelPackage, count: int, size: int = 0) -> Path:
    """`count` frames preprocessed as the runtime does, at the package's size unless `size`."""
    from tests.parity.helpers import random_frames

    from blip.preprocess import preprocess

    pp = package.preprocess
    size = size or package.task("caption").image_size
    pixels = [preprocess(f, size, pp.mean, pp.std, pp.interpolation) for f in random_frames(count, seed=3)]
    np.savez(str(path), pixel_values=np.concatenate(pixels))
    return path


def blipd(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "daemon.commands.cli", "quantize", *args], cwd=str(ROOT),
                          capture_output=True, text=True, timeout=600)


def quantized_ops(path: str) -> set:
    return {node.op_type for node in onnx.load(path).graph.node} & QUANT_OPS


@pytest.fixture(scope="module")
def source(tiny_package) -> ModelPackage:
    return ModelPackage.load(str(tiny_package))


@pytest.fixture(scope="module")
def calib(tmp_path_factory, source) -> Path:
    return calibration_npz(tmp_path_factory.mktemp("calib") / "frames.npz", source, 40)


ANY_SPEED = quantize.Bars(min_speedup=0.0)  # tiny graphs: only the error bars decide


@pytest.fixture(scope="module")
def int8_result(tmp_path_factory, source, calib):
    return quantize.quantize_package(source.path, tmp_path_factory.mktemp("q") / "int8", calibration=calib,
                                     threads=1, command="test", bars=ANY_SPEED)


def test_int8_package_loads_verified_and_records_its_choices(int8_result, calib, source):
    package = ModelPackage.load(str(int8_result.path))  # checksums verified
    doc = yaml.safe_load((int8_result.path / "manifest.yaml").read_text())
    vision = package.task("caption").graphs["vision"]
    assert vision.precision == "int8"
    assert quantized_ops(vision.path), "the vision graph holds no quantized operator"
    for task in package.tasks.values():
        for role, graph in task.graphs.items():
            entry = doc["tasks"][task.name]["graphs"][role]
            assert entry["precision"] == graph.precision in ("int8", "fp32")
            assert entry["quantization"]["method"] in ("static-qdq", "dynamic", "none")
            assert bool(quantized_ops(graph.path)) == (graph.precision == "int8")
    made = doc["source"]["quantized"]
    assert made["bars"] == {"cosine_min": 0.99, "argmax_min": 0.98, "min_speedup": 0.0}
    assert made["calibration"]["sha256"]["file"] == file_sha256(str(calib))
    assert made["calibration"]["frames"] == 40
    assert made["from_manifest_sha256"] == file_sha256(str(Path(source.path) / "manifest.yaml"))
    assert {c.file for c in int8_result.choices} == {
        str(Path(g.path).relative_to(source.path)) for t in source.tasks.values() for g in t.graphs.values()}


def test_int8_package_runs_in_the_runtime_unchanged(int8_result, source):
    from tests.parity.helpers import pixels, random_frames

    from blip.caption import Captioner
    from blip.match import Matcher
    from blip.runtime import create_runtime

    runtime = create_runtime("onnxruntime", device=None, threads=1)
    int8 = ModelPackage.load(str(int8_result.path))
    frames = random_frames(4, seed=9)
    fp32_cap, int8_cap = Captioner(source, runtime), Captioner(int8, runtime)
    for frame in frames:
        a = fp32_cap.embed_pixels(pixels(source, "caption", frame))
        b = int8_cap.embed_pixels(pixels(int8, "caption", frame))
        assert quantize.cosine(a, b) >= quantize.BARS.cosine_min
        assert int8_cap.caption(frame)  # the decoders run on int8 embeddings
    prompts = {"p": "a dog on the street", "q": "two red cars"}
    fp32_scores = Matcher(source, runtime).scores(frames[0], prompts)
    int8_scores = Matcher(int8, runtime).scores(frames[0], prompts)
    assert max(abs(fp32_scores[k] - int8_scores[k]) for k in prompts) < 0.05


def test_graph_kept_float_when_int8_breaks_the_error_bar(tmp_path, source, calib):
    bars = quantize.Bars(cosine_min=1.5, min_speedup=0.0)  # no int8 output can reach that cosine
    result = quantize.quantize_package(source.path, tmp_path / "out", calibration=calib, parts=("vision",), threads=1,
                                       bars=bars)
    package = ModelPackage.load(str(result.path))
    assert {g.precision for t in package.tasks.values() for g in t.graphs.values()} == {"fp32"}
    vision = [c for c in result.choices if c.role == "vision"]
    assert vision and all("error too large" in c.reason for c in vision)
    assert all(c.reason == "part not asked for" for c in result.choices if c.role != "vision")
    assert file_sha256(package.task("caption").graphs["vision"].path) == source.task("caption").graphs["vision"].sha256


def test_decoder_kept_float_when_greedy_tokens_change(tmp_path, source, calib):
    bars = quantize.Bars(argmax_min=1.5, min_speedup=0.0)  # no decoder can agree on more than every token
    result = quantize.quantize_package(source.path, tmp_path / "out", calibration=calib, parts=("text",), threads=1,
                                       bars=bars)
    steps = [c for c in result.choices if c.role == "decoder_step"]
    assert len(steps) == 2 and all(c.precision == "fp32" and "error too large" in c.reason for c in steps)
    assert all("logits_argmax_agreement" in c.errors for c in steps)
    assert any(c.precision == "int8" for c in result.choices if c.role in ("text", "question", "decoder_init"))


def test_calibration_folder_from_the_calibration_tool_is_read(tmp_path, source):
    size = source.task("caption").image_size
    (tmp_path / str(size)).mkdir()
    frames = np.random.default_rng(0).standard_normal((33, 1, 3, size, size)).astype(np.float32)
    for i, frame in enumerate(frames):
        np.savez(str(tmp_path / str(size) / ("frame_%04d.npz" % i)), pixel_values=frame)
    calib = quantize.load_calibration(tmp_path, source)
    assert calib.pixels[size].shape == (33, 3, size, size)
    train, held = calib.split(size)
    assert len(held) == 33 // quantize.HOLD_OUT_EVERY and len(train) + len(held) == 33


def test_bad_calibration_files_are_refused(tmp_path, source):
    with pytest.raises(ImageError, match=r"8 frames of 64x64, need at least 32"):
        quantize.load_calibration(calibration_npz(tmp_path / "few.npz", source, 8), source)
    with pytest.raises(ImageError, match=r"frames are 32x32, the package's vision graphs take 64x64"):
        quantize.load_calibration(calibration_npz(tmp_path / "small.npz", source, 32, size=32), source)
    np.savez(str(tmp_path / "other.npz"), images=np.zeros((32, 3, 64, 64), np.float32))
    with pytest.raises(ImageError, match="no pixel_values array"):
        quantize.load_calibration(tmp_path / "other.npz", source)
    with pytest.raises(PackageError, match="parts are vision, text"):
        quantize.parse_parts("vision,decoder")


def _seed_layout_copy(source: ModelPackage, out: Path) -> Path:
    """A valid seed-layout package (one cap graph) made from the tiny package's files."""
    shutil.copytree(source.tokenizer_dir, str(out / "tokenizer"))
    vision = source.task("caption").graphs["vision"]
    shutil.copyfile(vision.path, str(out / "blip_cap.onnx"))
    doc = {"format": 1, "name": "seedy", "tokenizer": "tokenizer",
           "preprocess": {"mean": list(source.preprocess.mean), "std": list(source.preprocess.std)},
           "tasks": {"caption": {"backend": "onnxruntime", "layout": "seed", "image_size": 64,
                                 "graphs": {"cap": {"file": "blip_cap.onnx", "sha256": vision.sha256}}}}}
    (out / "manifest.yaml").write_text(yaml.safe_dump(doc))
    return out


def test_cli_refuses_bad_input_with_one_line_and_exit_2(tmp_path, source, calib, int8_result):
    few = calibration_npz(tmp_path / "few.npz", source, 31)
    small = calibration_npz(tmp_path / "small.npz", source, 32, size=48)
    seed = _seed_layout_copy(source, tmp_path / "seed")
    cases = [
        ([str(seed), "--out", str(tmp_path / "a")], "layout seed; quantize takes split packages"),
        ([str(int8_result.path), "--out", str(tmp_path / "b")], "is already int8"),
        ([source.path, "--out", str(tmp_path / "c"), "--calibration", str(few)], "31 frames of 64x64, need at least 32"),
        ([source.path, "--out", str(tmp_path / "d"), "--calibration", str(small)], "frames are 48x48"),
        ([source.path, "--out", str(tmp_path / "e"), "--parts", "audio"], "--parts 'audio'"),
    ]
    for args, message in cases:
        done = blipd(*args)
        assert done.returncode == 2, (args, done.stderr)
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and message in lines[0], done.stderr
        assert not Path(args[2]).exists()


def test_cli_writes_the_package_and_prints_each_graph(tmp_path, source, calib):
    done = blipd(source.path, "--out", str(tmp_path / "int8"), "--calibration", str(calib), "--parts", "vision",
                 "--threads", "1")
    assert done.returncode == 0, done.stderr
    assert "vision.onnx" in done.stdout and "speedup" in done.stdout
    assert ModelPackage.load(str(tmp_path / "int8")).task("match")
