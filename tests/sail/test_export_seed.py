"""blip/export/seed.py and compile_bmodel.sh: names, static shapes, the TPU-MLIR commands; the
seed ONNX package also runs on ONNX Runtime and agrees with the sail double."""
import os
import subprocess
import sys

import numpy as np
import onnx
import pytest
import yaml

from tests.sail.conftest import REPO

pytestmark = pytest.mark.sail

SEED_IO = {
    "caption/blip_cap.onnx": ("blip_cap", ["pixel_values"]),
    "match/blip_itm.onnx": ("blip_itm", ["pixel_values", "input_ids", "attention_mask"]),
    "answer/blip_vqa_venc.onnx": ("blip_vqa_venc", ["pixel_values"]),
    "answer/blip_vqa_tenc.onnx": ("blip_vqa_tenc", ["image_embeds", "input_ids", "attention_mask"]),
    "answer/blip_vqa_tdec.onnx": ("blip_vqa_tdec", ["question_states"]),
}


def _static_dims(value):
    return [d.dim_value if d.HasField("dim_value") else None for d in value.type.tensor_type.shape.dim]


def test_seed_graphs_have_the_seed_names_and_static_shapes(seed_onnx):
    for rel, (graph_name, inputs) in SEED_IO.items():
        model = onnx.load(str(seed_onnx / rel))
        assert model.graph.name == graph_name
        assert [i.name for i in model.graph.input] == inputs
        assert [o.name for o in model.graph.output] == ["output"]
        assert model.opset_import[0].version == 13
        for value in list(model.graph.input) + list(model.graph.output):
            assert None not in _static_dims(value), (rel, value.name)
    ids = onnx.load(str(seed_onnx / "match/blip_itm.onnx")).graph.input[1]
    assert _static_dims(ids) == [1, 35]
    assert _static_dims(onnx.load(str(seed_onnx / "caption/blip_cap.onnx")).graph.output[0]) == [1, 20]
    assert _static_dims(onnx.load(str(seed_onnx / "answer/blip_vqa_tdec.onnx")).graph.output[0]) == [1, 10]
    doc = yaml.safe_load((seed_onnx / "manifest.yaml").read_text())
    assert {t["layout"] for t in doc["tasks"].values()} == {"seed"}


def test_seed_onnx_on_onnxruntime_equals_the_sail_double(seed_onnx, seed_package, sail):
    from blip.package import ModelPackage
    from blip.runtime.onnxruntime import OrtRuntime
    from blip.runtime.sail import SailRuntime
    from blip.seed import SEED_TASKS

    frame = np.random.default_rng(3).integers(0, 256, (40, 40, 3), dtype=np.uint8)
    results = []
    for package, runtime in ((ModelPackage.load(str(seed_onnx)), OrtRuntime(device=None)), (seed_package, SailRuntime())):
        tasks = {name: cls(package, runtime) for name, cls in SEED_TASKS.items()}
        results.append((tasks["caption"].caption_ids(frame), tasks["match"].scores(frame, {"p": "a dog"})["p"],
                        tasks["answer"].answer_ids(frame, {"q": "is it red?"})["q"]))
    assert results[0][0] == results[1][0] and results[0][2] == results[1][2]
    assert results[0][1] == pytest.approx(results[1][1], abs=1e-5)


def _dry_run(package, chip, out):
    env = dict(os.environ, DRY_RUN="1", PYTHON=sys.executable)
    return subprocess.run(["bash", str(REPO / "blip/export/compile_bmodel.sh"), str(package), chip, str(out)],
                          env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)


def test_compile_script_runs_tpu_mlir_like_the_seed(seed_onnx, tmp_path):
    proc = _dry_run(seed_onnx, "BM1684X", tmp_path / "out")
    assert proc.returncode == 0, proc.stderr.decode()
    lines = proc.stdout.decode().splitlines()
    itm = [l for l in lines if "--model_name blip_itm " in l]
    assert itm and "--input_shapes [[1,3,64,64],[1,35],[1,35]]" in itm[0]
    deploy = [l for l in lines if l.startswith("model_deploy.py") and "blip_cap.mlir" in l]
    assert deploy and "--quantize F32 --chip bm1684x" in deploy[0] and "--num_core" not in deploy[0]
    assert deploy[0].endswith("/BM1684X/blip_cap_bm1684x_f32_1b.bmodel")
    assert any(l.startswith("cp -r") and l.endswith("/bert-base-uncased") for l in lines)


def test_static_split_graphs_and_the_script_refuses_dynamic_ones(split_package, tmp_path):
    dynamic = split_package.source["static_shapes"]["from"]  # the split ONNX package it came from
    assert split_package.task("match").settings["max_text_length"] == 35
    text = onnx.load(split_package.task("match").graphs["text"].path)
    assert _static_dims(text.graph.input[0]) == [1, 35]
    step = onnx.load(split_package.task("caption").graphs["decoder_step"].path)
    assert all(None not in _static_dims(v) for v in step.graph.input)
    proc = _dry_run(dynamic, "bm1684x", tmp_path / "out")
    assert proc.returncode != 0 and b"dynamic dim" in proc.stderr
