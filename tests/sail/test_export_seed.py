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


# compile_bmodel.sh precisions (PRECISION, CALIB_DIR) and blip/export/calibration.py. TPU-MLIR is not
# installable here (its wheels need Python 3.10), so the commands are checked as printed by DRY_RUN and,
# once, run against stand-in tools that check what they are handed and write what the real ones write.

SCRIPT = REPO / "blip/export/compile_bmodel.sh"


def _compile(package, chip, out, precision=None, calib=None, dry=True, path=None):
    env = dict(os.environ, PYTHON=sys.executable)
    for key in ("DRY_RUN", "PRECISION", "CALIB_DIR", "TOLERANCE"):
        env.pop(key, None)
    if dry:
        env["DRY_RUN"] = "1"
    if precision:
        env["PRECISION"] = precision
    if calib:
        env["CALIB_DIR"] = str(calib)
    if path:
        env["PATH"] = str(path) + os.pathsep + env["PATH"]
    return subprocess.run(["bash", str(SCRIPT), str(package), chip, str(out)], env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=120)


def _deploys(proc):
    """{bmodel path: model_deploy line} of a dry run."""
    lines = [l for l in proc.stdout.decode().splitlines() if l.startswith("model_deploy.py")]
    return {l.rsplit(" --model ", 1)[1]: l for l in lines}


@pytest.fixture(scope="module")
def static_split(split_package):
    """The static-shape split ONNX package the `split_package` bmodels were "compiled" from."""
    from pathlib import Path

    static = Path(split_package.path).parent / "static"
    assert (static / "manifest.yaml").is_file()
    return static


@pytest.fixture(scope="module")
def calib_dir(seed_onnx, tmp_path_factory):
    """Calibration set of the tiny packages (all 64 px) from a short clip, by the real module."""
    from blip.export.calibration import write_calibration_set
    from tests import media

    root = tmp_path_factory.mktemp("calib")
    clip = media.make_clip(root / "clip.mp4", 1, fps=10)
    write_calibration_set(seed_onnx, [str(clip)], 4, root / "set")
    return root / "set"


def test_compile_script_is_valid_bash():
    assert subprocess.run(["bash", "-n", str(SCRIPT)]).returncode == 0


def test_f16_seed_graphs_on_bm1684x_and_cv186ah(seed_onnx, tmp_path):
    proc = _compile(seed_onnx, "bm1684x", tmp_path / "out", "f16")
    assert proc.returncode == 0, proc.stderr.decode()
    deploys = _deploys(proc)
    assert sorted(p.rsplit("/", 1)[1] for p in deploys) == sorted(
        "%s_bm1684x_f16_1b.bmodel" % graph for graph, _ in SEED_IO.values())
    assert all("--quantize F16 --chip bm1684x" in l and "--calibration_table" not in l for l in deploys.values())
    assert b"run_calibration" not in proc.stdout
    proc = _compile(seed_onnx, "CV186AH", tmp_path / "out2", "bf16")
    assert proc.returncode == 0, proc.stderr.decode()
    deploys = _deploys(proc)  # TPU-MLIR calls the chip cv186x; blipd's file names say cv186ah
    assert all("--quantize BF16 --chip cv186x" in l for l in deploys.values())
    assert all(p.endswith("_cv186ah_bf16_1b.bmodel") and "/CV186AH/" in p for p in deploys)


def test_f32_split_graphs_keep_the_names_bmodels_expects(static_split, tmp_path):
    proc = _compile(static_split, "bm1688", tmp_path / "out")
    assert proc.returncode == 0, proc.stderr.decode()
    deploys = _deploys(proc)
    expected = sorted(str(tmp_path / "out" / g.relative_to(static_split).with_suffix(".bmodel"))
                      for g in static_split.glob("*/*.onnx"))
    assert sorted(deploys) == expected and len(expected) == 9
    assert all("--quantize F32 --chip bm1688" in l and "--num_core" not in l for l in deploys.values())


@pytest.mark.parametrize("chip, precision", [("bm1684", "f16"), ("bm1684", "bf16"), ("bm1684x", "int4")])
def test_a_precision_the_chip_lacks_is_refused(seed_onnx, tmp_path, chip, precision):
    proc = _compile(seed_onnx, chip, tmp_path / "out", precision)
    err = proc.stderr.decode()
    assert proc.returncode == 2 and proc.stdout == b""
    assert len(err.strip().splitlines()) == 1 and ("PRECISION=%s" % precision) in err and chip in err


def test_int8_needs_a_calibration_set_of_each_image_size(seed_onnx, tmp_path):
    proc = _compile(seed_onnx, "bm1684x", tmp_path / "out", "int8")
    err = proc.stderr.decode()
    assert proc.returncode == 2 and proc.stdout == b""
    assert len(err.strip().splitlines()) == 1 and "CALIB_DIR" in err and "blip.export.calibration" in err
    (tmp_path / "cal" / "384").mkdir(parents=True)  # the tiny graphs take 64 px
    proc = _compile(seed_onnx, "bm1684x", tmp_path / "out", "int8", calib=tmp_path / "cal")
    err = proc.stderr.decode()
    assert proc.returncode == 2 and proc.stdout == b"" and "64/frame_*.npz" in err


def test_int8_split_quantizes_the_vision_graphs_only(static_split, calib_dir, tmp_path):
    for chip, text_float in (("bm1684x", "F16"), ("bm1684", "F32")):
        proc = _compile(static_split, chip, tmp_path / chip, "int8", calib=calib_dir)
        assert proc.returncode == 0, proc.stderr.decode()
        out = proc.stdout.decode()
        deploys = _deploys(proc)
        assert len(deploys) == 9 and "--quant_input" not in out and "--quant_output" not in out
        for bmodel, line in deploys.items():
            if bmodel.endswith("/vision.bmodel"):
                name = "%s_vision" % bmodel.rsplit("/", 2)[1]
                assert ("--quantize INT8 --calibration_table %s_cali_table" % name) in line
                assert "--tolerance 0.85,0.45" in line and "--quantize_table" not in line
                assert ("run_calibration.py %s.mlir --data_list %s_cali_list.txt --input_num 4 -o %s_cali_table"
                        % (name, name, name)) in out
                assert ("write_calibration_list %s/64 %s_cali_list.txt" % (calib_dir, name)) in out
            else:
                assert ("--quantize %s --chip %s" % (text_float, chip)) in line
        assert out.count("run_calibration.py") == 3


def test_int8_seed_mixes_precisions_per_graph(seed_onnx, calib_dir, tmp_path):
    proc = _compile(seed_onnx, "bm1684", tmp_path / "out", "int8", calib=calib_dir)
    assert proc.returncode == 0, proc.stderr.decode()
    out = proc.stdout.decode()
    deploys = {p.rsplit("/", 1)[1]: l for p, l in _deploys(proc).items()}
    assert sorted(deploys) == ["blip_cap_bm1684_int8_1b.bmodel", "blip_itm_bm1684_int8_1b.bmodel",
                               "blip_vqa_tdec_bm1684_f32_1b.bmodel", "blip_vqa_tenc_bm1684_f32_1b.bmodel",
                               "blip_vqa_venc_bm1684_int8_1b.bmodel"]
    assert "--tolerance" in deploys["blip_vqa_venc_bm1684_int8_1b.bmodel"]
    for graph in ("blip_cap", "blip_itm"):  # the ViT inside is INT8, the text side F32 on BM1684
        assert ("--quantize_table %s_qtable" % graph) in deploys["%s_bm1684_int8_1b.bmodel" % graph]
        assert ("write_float_qtable %s.mlir F32 %s_qtable" % (graph, graph)) in out
    assert "--quantize F32 --chip bm1684" in deploys["blip_vqa_tenc_bm1684_f32_1b.bmodel"]
    assert ("write_itm_calibration %s/64 %s/blip_itm/calibration 35" % (calib_dir, tmp_path / "out" / ".work")) in out


FAKE_TOOL = r'''#!%(python)s
"""Stand-in for a TPU-MLIR tool: checks what compile_bmodel.sh hands it, writes the files the real
tool writes (a .mlir whose ops are named after the ONNX nodes; the bmodel is the ONNX itself, which
the sail double runs), and logs its argv."""
import json, os, re, shutil, sys
import numpy as np
tool, args = os.path.basename(sys.argv[0]), sys.argv[1:]
with open(os.environ["FAKE_TPU_LOG"], "a") as fh:
    fh.write(json.dumps({"tool": tool, "cwd": os.getcwd(), "args": args}) + "\n")
def opt(name):
    return args[args.index(name) + 1] if name in args else None
if tool == "model_transform.py":
    import onnx
    model = onnx.load(opt("--model_def"), load_external_data=False)
    with open(opt("--mlir"), "w") as fh:
        fh.write("// model_def %%s\n// inputs %%s\n" %% (opt("--model_def"), ",".join(i.name for i in model.graph.input)))
        fh.writelines('#loc%%d = loc("%%s")\n' %% (i, n.name or n.output[0]) for i, n in enumerate(model.graph.node))
    if opt("--test_input"):
        shutil.copy(opt("--test_input"), opt("--model_name") + "_in_f32.npz")
        open(opt("--test_result"), "wb").close()
elif tool == "run_calibration.py":
    inputs = re.search(r"// inputs (\S+)", open(args[0]).read()).group(1).split(",")
    files = open(opt("--data_list")).read().split()
    assert len(files) == int(opt("--input_num")), files
    for path in files:
        assert sorted(np.load(path).files) == sorted(inputs), (path, inputs)
    open(opt("-o"), "w").write("# calibration table\n")
else:
    for name in ("--calibration_table", "--quantize_table", "--test_input", "--test_reference"):
        assert opt(name) is None or os.path.isfile(opt(name)), name
    shutil.copy(re.search(r"// model_def (\S+)", open(opt("--mlir")).read()).group(1), opt("--model"))
'''


def test_int8_seed_compile_runs_end_to_end_on_stand_in_tools(seed_onnx, calib_dir, tmp_path, monkeypatch):
    import json

    from blip.package import ModelPackage
    from blip.package_seed import package_seed

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("model_transform.py", "run_calibration.py", "model_deploy.py"):
        (bin_dir / tool).write_text(FAKE_TOOL % {"python": sys.executable})
        (bin_dir / tool).chmod(0o755)
    monkeypatch.setenv("FAKE_TPU_LOG", str(tmp_path / "calls.jsonl"))
    out = tmp_path / "out"
    proc = _compile(seed_onnx, "bm1684x", out, "int8", calib=calib_dir, dry=False, path=bin_dir)
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    calls = [json.loads(l) for l in (tmp_path / "calls.jsonl").read_text().splitlines()]
    assert [c["tool"] for c in calls].count("run_calibration.py") == 3
    assert all(c["cwd"].startswith(str(out / ".work")) for c in calls)
    qtable = (out / ".work/blip_cap/blip_cap_qtable").read_text().splitlines()
    assert qtable[0].startswith("#") and len(qtable) > 100
    assert all(l.endswith(" F16") and "/vision/" not in l for l in qtable[1:])
    assert any(l.startswith("/loop/") for l in qtable[1:])
    itm = np.load(str(sorted((out / ".work/blip_itm/calibration").glob("*.npz"))[0]))
    assert itm["pixel_values"].shape == (1, 3, 64, 64) and itm["input_ids"].shape == (1, 35)
    assert sorted(p.name for p in (out / "BM1684X").iterdir()) == [
        "blip_cap_bm1684x_int8_1b.bmodel", "blip_itm_bm1684x_int8_1b.bmodel", "blip_vqa_tdec_bm1684x_f16_1b.bmodel",
        "blip_vqa_tenc_bm1684x_f16_1b.bmodel", "blip_vqa_venc_bm1684x_int8_1b.bmodel"]
    package_seed(out, "bm1684x")  # the mixed file names are what package-seed finds
    package = ModelPackage.load(str(out))
    assert package.task("answer").graphs["venc"].path.endswith("blip_vqa_venc_bm1684x_int8_1b.bmodel")
    assert package.task("answer").graphs["tdec"].path.endswith("blip_vqa_tdec_bm1684x_f16_1b.bmodel")


def _frames(clip, indices):
    import cv2

    cap = cv2.VideoCapture(str(clip))
    frames, i = {}, 0
    while len(frames) < len(indices):
        ok, frame = cap.read()
        assert ok, "clip ended at frame %d" % i
        if i in indices:
            frames[i] = frame
        i += 1
    cap.release()
    return [frames[i] for i in indices]


def test_calibration_frames_are_the_runtime_preprocessing(tiny_package, clips, tmp_path):
    from blip.package import ModelPackage
    from blip.preprocess import preprocess

    out = tmp_path / "cal"
    proc = subprocess.run([sys.executable, "-m", "blip.export.calibration", "--package", str(tiny_package),
                           "--video", str(clips["moving"]), "--video", str(clips["short"]), "--count", "6",
                           "--out", str(out)], cwd=str(REPO), stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=120)
    assert proc.returncode == 0, proc.stderr.decode()
    package = ModelPackage.load(str(tiny_package))
    size = package.task("caption").image_size
    assert sorted(p.name for p in out.iterdir()) == [str(size), "frames"]
    files = sorted((out / str(size)).iterdir())
    assert [f.name for f in files] == ["frame_%04d.npz" % i for i in range(6)]
    assert len(list((out / "frames" / str(size)).glob("frame_*.jpg"))) == 6
    # 60 frames end to end (50 + 10): the middles of six equal shares, 5, 15, ... 55
    expected = _frames(clips["moving"], [5, 15, 25, 35, 45]) + _frames(clips["short"], [5])
    pp = package.preprocess
    for path, frame in zip(files, expected):
        npz = np.load(str(path))
        assert npz.files == ["pixel_values"]
        pixels = npz["pixel_values"]
        assert pixels.dtype == np.float32 and pixels.shape == (1, 3, size, size)
        assert np.array_equal(pixels, preprocess(frame, size, pp.mean, pp.std, pp.interpolation))
    assert not np.array_equal(np.load(str(files[0]))["pixel_values"], np.load(str(files[5]))["pixel_values"])


def test_calibration_writes_one_set_per_image_size(tiny_package, clips, tmp_path):
    import shutil

    from blip.export.calibration import to_bgr_image, write_calibration_set
    from blip.package import ModelPackage

    package = tmp_path / "pkg"
    shutil.copytree(str(tiny_package), str(package))
    doc = yaml.safe_load((package / "manifest.yaml").read_text())
    doc["tasks"]["answer"]["image_size"] = 48  # as the seed's VQA encoder differs (480 vs 384)
    (package / "manifest.yaml").write_text(yaml.safe_dump(doc))
    written = write_calibration_set(package, [str(clips["short"])], 3, tmp_path / "cal")
    assert sorted(written) == [48, 64] and all(len(v) == 3 for v in written.values())
    assert np.load(str(written[48][0]))["pixel_values"].shape == (1, 3, 48, 48)
    # the JPEG shows the npz's pixels: de-normalising gives back the resized frame (+-1 rounding)
    import cv2

    settings = ModelPackage.load(str(package), verify_checksums=False).preprocess
    frame = _frames(clips["short"], [1])[0]  # the first of 3 in 10 frames
    resized = cv2.resize(frame, (48, 48), interpolation=cv2.INTER_CUBIC)
    shown = to_bgr_image(np.load(str(written[48][0]))["pixel_values"], settings)
    assert shown.dtype == np.uint8 and np.abs(shown.astype(int) - resized.astype(int)).max() <= 1
    assert cv2.imread(str(tmp_path / "cal/frames/48/frame_0000.jpg")).shape == (48, 48, 3)


def test_calibration_errors_are_one_line_naming_the_file(tiny_package, tmp_path):
    from blip.errors import ExportError
    from blip.export import calibration
    from blip.package import GraphFile, ModelPackage, TaskSpec
    from tests import media

    bad = media.make_text_file(tmp_path / "notes.mp4")
    with pytest.raises(SystemExit) as info:
        calibration.main(["--package", str(tiny_package), "--video", str(bad), "--count", "2", "--out", str(tmp_path / "o")])
    message = str(info.value.code)
    assert len(message.splitlines()) == 1 and str(bad) in message
    assert not (tmp_path / "o").exists()
    with pytest.raises(SystemExit) as info:
        calibration.main(["--package", str(tiny_package), "--video", "rtsp://u:hunter2@cam/s", "--count", "2",
                          "--out", str(tmp_path / "o")])
    assert "live stream" in str(info.value.code) and "hunter2" not in str(info.value.code)
    loaded = ModelPackage.load(str(tiny_package), verify_checksums=False)
    text_only = ModelPackage("t", str(tiny_package), loaded.preprocess, {
        "match": TaskSpec("match", "onnxruntime", "split", 64, {"text": GraphFile(str(tiny_package / "m.onnx"), "0")}, {})},
        loaded.tokenizer_dir)
    with pytest.raises(ExportError, match="no vision graph"):
        calibration.vision_sizes(text_only)
