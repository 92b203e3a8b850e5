"""The exporter: refuses what is not BLIP, verifies every graph, writes a loadable package."""
import json
import logging
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from blip.errors import ExportError

pytestmark = pytest.mark.parity
REPO = Path(__file__).resolve().parents[2]


def _fake_checkpoint(folder, config):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "model.safetensors").write_bytes(b"")
    return folder


@pytest.mark.parametrize(
    "case, message",
    [
        ("empty", "no config.json"),
        ("bert", "model_type is 'bert'"),
        ("no-weights", "no weights"),
    ],
)
def test_refuses_a_folder_that_is_not_blip(tmp_path, case, message):
    from blip.export.api import export_package

    folder = tmp_path / case
    if case == "empty":
        folder.mkdir()
    elif case == "bert":
        _fake_checkpoint(folder, {"model_type": "bert", "architectures": ["BertModel"]})
    else:
        folder.mkdir()
        config = {"model_type": "blip", "architectures": ["BlipForConditionalGeneration"]}
        (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ExportError) as err:
        export_package(tmp_path / "out", caption=folder)
    text = str(err.value)
    assert message in text and str(folder) in text and "\n" not in text
    assert not (tmp_path / "out").exists()


def test_refuses_a_checkpoint_of_another_task(tmp_path, tiny_checkpoints):
    from blip.export.api import export_package

    with pytest.raises(ExportError, match="BlipForConditionalGeneration") as err:
        export_package(tmp_path / "out", caption=tiny_checkpoints["match"])
    assert str(tiny_checkpoints["match"]) in str(err.value)


def test_refuses_an_unknown_layout_and_no_checkpoint(tmp_path, tiny_checkpoints):
    from blip.export.api import export_package

    with pytest.raises(ExportError, match="layout 'fused' is unknown"):
        export_package(tmp_path / "out", caption=tiny_checkpoints["caption"], layout="fused")
    with pytest.raises(ExportError, match="at least one checkpoint"):
        export_package(tmp_path / "out")


def test_refuses_a_tokenizer_that_disagrees_with_the_config(tmp_path, tiny_checkpoints):
    from blip.export.api import export_package

    folder = tmp_path / "hf-caption"
    shutil.copytree(tiny_checkpoints["caption"], folder)
    config = json.loads((folder / "config.json").read_text())
    config["text_config"]["bos_token_id"] = 5
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ExportError, match=r"\[DEC\].*text config says 5"):
        export_package(tmp_path / "out", caption=folder)


def test_module_refuses_a_cli_run_with_one_error_line(tmp_path):
    folder = tmp_path / "not-blip"
    folder.mkdir()
    proc = subprocess.run(
        [sys.executable, "-m", "blip.export", "--caption", str(folder), "--out", str(tmp_path / "out")],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=str(REPO),
    )
    assert proc.returncode == 1
    errors = [line for line in proc.stderr.splitlines() if "ERROR" in line]
    assert len(errors) == 1 and str(folder) in errors[0] and "no config.json" in errors[0]


def test_manifest_lists_every_graph_with_its_checksum(tiny_package, tiny_checkpoints):
    from blip.export.manifest import sha256_of
    from blip.graphs import SPLIT_ROLES

    doc = yaml.safe_load((tiny_package / "manifest.yaml").read_text())
    assert doc["format"] == 1 and doc["name"] == "tiny"
    assert set(doc["tasks"]) == {"caption", "match", "answer"}
    for task, body in doc["tasks"].items():
        assert body["layout"] == "split" and body["backend"] == "onnxruntime" and body["image_size"] == 64
        assert list(body["graphs"]) == list(SPLIT_ROLES[task])
        for entry in body["graphs"].values():
            assert entry["sha256"] == sha256_of(tiny_package / entry["file"])
    caption = doc["tasks"]["caption"]["settings"]
    assert caption["prompt"] == "a picture of " and (caption["max_length"], caption["min_length"]) == (20, 5)
    config = json.loads((tiny_checkpoints["caption"] / "config.json").read_text())["text_config"]
    assert caption["bos_token_id"] == config["bos_token_id"]
    assert caption["eos_token_id"] == config["sep_token_id"] and caption["pad_token_id"] == config["pad_token_id"]
    answer = doc["tasks"]["answer"]["settings"]
    assert (answer["max_length"], answer["min_length"], answer["max_text_length"]) == (10, 1, 35)
    assert doc["source"]["checkpoints"]["match"] == str(tiny_checkpoints["match"].resolve())


def test_package_tokenizer_equals_the_checkpoint_tokenizer(tiny_package, tiny_checkpoints, tmp_path):
    from transformers import BertTokenizerFast

    from blip.tokenizer import Tokenizer

    hf = BertTokenizerFast.from_pretrained(str(tiny_checkpoints["caption"]))
    only_vocab = tmp_path / "vocab-only"
    only_vocab.mkdir()
    shutil.copy(tiny_package / "tokenizer" / "vocab.txt", only_vocab / "vocab.txt")
    vocab_lines = (only_vocab / "vocab.txt").read_text().splitlines()
    assert len(vocab_lines) == len(hf) and vocab_lines[hf.bos_token_id] == "[DEC]"
    for ours in (Tokenizer.from_dir(str(tiny_package / "tokenizer")), Tokenizer.from_dir(str(only_vocab))):
        assert ours.bos_id == hf.bos_token_id == hf.convert_tokens_to_ids("[DEC]")
        assert ours.enc_id == hf.convert_tokens_to_ids("[ENC]")
        for text in ("a picture of ", "Two cats sitting next to the door?", "walkings"):
            assert ours.encode(text, 35) == hf(text).input_ids


def test_export_verifies_graphs_against_pytorch(tiny_package, tiny_checkpoints):
    """The check the exporter runs on every graph passes on the real module and fails on a wrong one."""
    from blip.export.checkpoint import load_checkpoint
    from blip.export.onnx_export import verify_graph
    from blip.export.samples import Dims, role_feeds
    from blip.export.tasks import task_modules

    ckpt = load_checkpoint(tiny_checkpoints["answer"], "answer")
    graphs = task_modules("answer", ckpt.model)
    dims = Dims(ckpt.model.config)
    image_embeds = graphs["vision"](role_feeds("vision", dims, None)[0]["pixel_values"]).detach()
    step = tiny_package / "answer" / "decoder_step.onnx"
    feeds = role_feeds("decoder_step", dims, image_embeds)[1]
    assert verify_graph(step, graphs["decoder_step"], "decoder_step", feeds) < 1e-4
    with torch.no_grad():
        ckpt.model.text_decoder.bert.encoder.layer[1].crossattention.self.query.weight.mul_(1.5)
    with pytest.raises(ExportError, match="decoder_step.onnx: output logits differs from PyTorch"):
        verify_graph(step, graphs["decoder_step"], "decoder_step", feeds)


def test_export_logs_one_line_per_graph(tmp_path, tiny_checkpoints, caplog):
    from blip.export.api import export_package

    with caplog.at_level(logging.INFO, logger="blip.export"):
        out = export_package(tmp_path / "pkg", match=tiny_checkpoints["match"], name="m")
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("exported ")]
    assert [line.split()[1] for line in lines] == ["match/vision.onnx", "match/text.onnx"]
    assert all("MB) in" in line and "max abs diff" in line for line in lines)
    assert sorted(p.name for p in out.iterdir()) == ["manifest.yaml", "match", "tokenizer"]
    with pytest.raises(ExportError, match="exists and is not empty"):
        export_package(out, match=tiny_checkpoints["match"])


def test_graphs_take_other_batch_and_length_sizes(tiny_package):
    """Dynamic axes: P prompts and T tokens are free, the cache length L too."""
    import onnxruntime as ort

    text = ort.InferenceSession(str(tiny_package / "match" / "text.onnx"), providers=["CPUExecutionProvider"])
    embeds = np.random.default_rng(0).normal(size=(1, 17, 32)).astype(np.float32)
    for p, t in ((1, 3), (7, 12)):
        ids = np.full((p, t), 7, dtype=np.int64)
        scores = text.run(None, {"input_ids": ids, "attention_mask": np.ones_like(ids), "image_embeds": embeds})[0]
        assert scores.shape == (p,) and np.all((scores >= 0) & (scores <= 1))
        assert np.allclose(scores, scores[0], atol=1e-6)  # same prompt, same score


def test_fused_vision_attention_matches_and_stays_off_the_tpu_paths(tmp_path, tiny_package, tiny_checkpoints):
    """--vision-attention fused: one ONNX Runtime MultiHeadAttention node per ViT layer, the same
    image embeddings as the portable graph, and refused wherever TPU-MLIR would be handed it."""
    import onnx
    import onnxruntime as ort
    from blip.export.api import export_package
    from blip.export.seed import static_split_package
    from blip.package import ModelPackage

    fused = export_package(tmp_path / "fused", caption=tiny_checkpoints["caption"], vision_attention="fused")
    vision = fused / "caption" / "vision.onnx"
    layers = json.loads((tiny_checkpoints["caption"] / "config.json").read_text())["vision_config"]["num_hidden_layers"]
    ops = [n.op_type for n in onnx.load(str(vision)).graph.node if n.domain == "com.microsoft"]
    assert ops == ["MultiHeadAttention"] * layers
    assert yaml.safe_load((fused / "manifest.yaml").read_text())["source"]["vision_attention"] == "fused"
    sessions = [ort.InferenceSession(str(p), providers=["CPUExecutionProvider"])
                for p in (vision, tiny_package / "caption" / "vision.onnx")]
    shape = [d if isinstance(d, int) else 1 for d in sessions[0].get_inputs()[0].shape]
    pixels = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    got, want = (s.run(None, {"pixel_values": pixels})[0] for s in sessions)
    assert np.abs(got - want).max() < 1e-4
    from blip.caption import Captioner
    from blip.runtime import create_runtime
    from tests.parity.helpers import random_frames

    runtime = create_runtime(name="onnxruntime", device=None, threads=1)  # blipd's session options
    captioners = [Captioner(ModelPackage.load(str(p)), runtime) for p in (fused, tiny_package)]
    for frame in random_frames(3, seed=7):
        assert captioners[0].caption_ids(frame) == captioners[1].caption_ids(frame)

    with pytest.raises(ExportError, match=r"vision\.onnx: com\.microsoft::MultiHeadAttention .*--vision-attention hf"):
        static_split_package(fused, tmp_path / "static")
    assert not (tmp_path / "static").exists()
    with pytest.raises(ExportError, match="compiles only --vision-attention hf"):
        export_package(tmp_path / "seed", caption=tiny_checkpoints["caption"], layout="seed", vision_attention="fused")
    with pytest.raises(ExportError, match="vision attention 'flash' is unknown"):
        export_package(tmp_path / "other", caption=tiny_checkpoints["caption"], vision_attention="flash")
