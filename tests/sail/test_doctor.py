"""`blipd doctor` on the sail double: a SOPHON config (seed bmodels, a decoder: sail stream) run
against its ONNX package on ONNX Runtime CPU, and a box where preprocess tpu fails silently."""
import json
import subprocess
import sys

import pytest
import yaml

from tests.integration.conftest import base_config, stream_entry
from tests.media import make_clip
from tests.sail.conftest import REPO, fake_env

pytestmark = pytest.mark.sail

FRAMES = 8


@pytest.fixture
def dev(tmp_path, monkeypatch):
    """Fake TPU/VPU device nodes for preflight (this machine has none)."""
    from daemon.commands import doctor

    folder = tmp_path / "dev"
    folder.mkdir()
    for name in ("bm-sophon0",):  # a PCIe card: the VPU is reached through it too
        (folder / name).write_bytes(b"")
    monkeypatch.setattr(doctor, "DEV_DIR", str(folder))
    return folder


@pytest.fixture
def config(seed_package, tmp_path):
    clip = make_clip(tmp_path / "clip.mp4", seconds=FRAMES / 8, fps=8, size=(160, 96))
    doc = base_config(seed_package.path, "tcp://127.0.0.1:1", [stream_entry("cam", str(clip), decoder="sail")])
    doc["model"]["backend"] = "sail"
    path = tmp_path / "blipd.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def test_doctor_passes_a_working_box_and_writes_the_evidence(config, seed_onnx, dev, sail, capsys):
    from daemon.commands.doctor import render, run_doctor

    report = run_doctor(str(config), seconds=30, reference=str(seed_onnx), runs=3)
    render(report, sys.stdout)
    table = capsys.readouterr().out
    print(table)
    assert report["problems"] == [], report["problems"]
    assert report["preflight_ok"] is True
    assert report["sail_version"].startswith(">= 3.10.2 by its features, build master(")
    assert report["chip"] == "BM1684X"
    assert sorted(report["tasks"]) == ["answer", "caption", "match"]
    for task, entry in report["tasks"].items():
        assert entry["backend"] == "sail" and entry["median_ms"] > 0
        assert entry["reference"]["median_ms"] > 0
        if task == "match":
            assert entry["score_max_diff"] <= 1e-4
        else:
            assert entry["tokens_identical"] is True
    assert len(report["graphs"]) == 5 and all(ms > 0 for ms in report["graphs"].values())  # the five seed bmodels
    cam = report["decoder"]["cam"]
    assert cam["frames"] == FRAMES and cam["errors"] == [] and (cam["width"], cam["height"]) == (160, 96)
    assert "sail code 5007" in cam["end"] and cam["read_code"] == 5007
    # BM1684X resizes bilinear on the device, the CPU bicubic: close on average, apart at edges
    assert 0 < report["preprocess_mean_abs_diff"] <= 0.05 and report["preprocess_max_abs_diff"] < 1.0
    assert "OK: every check passed" in table and "token ids identical" in table
    json.dumps(report)  # all of it is JSON


def test_doctor_lists_what_fails_on_a_bm1688_with_bm1684x_bmodels(config, dev, sail):
    from daemon.commands.doctor import run_doctor

    sail._configure(chip="BM1688")  # also: convert_to fails silently on BM1688
    report = run_doctor(str(config), seconds=30, runs=1)
    problems = "\n".join(report["problems"])
    assert report["preflight_ok"] is False and report["chip"] == "BM1688"
    assert "compiled for BM1684X, this device is BM1688" in problems
    assert "backend sail:" in problems  # the engine cannot load those bmodels
    assert "preprocess tpu gave no usable pixels" in problems
    assert report["decoder"]["cam"]["frames"] == FRAMES  # decoding itself works


@pytest.mark.integration
def test_blipd_doctor_exit_status_and_json(config, dev, tmp_path):
    """The command as a person runs it: without device nodes here, preflight fails: exit 1, JSON
    written; a missing image is bad input: exit 2, one line."""
    out = tmp_path / "doctor.json"
    cmd = [sys.executable, "-m", "daemon.commands.cli", "doctor", "-c", str(config), "--json", str(out),
           "--seconds", "5", "--runs", "1"]
    proc = subprocess.run(cmd, env=fake_env(), cwd=str(REPO), stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=300)
    assert proc.returncode == 1, proc.stderr.decode()[-2000:]
    report = json.loads(out.read_text())
    assert report["preflight_ok"] is False and report["decoder"]["cam"]["frames"] == FRAMES
    assert b"problem(s):" in proc.stdout
    bad = subprocess.run(cmd + ["--image", str(tmp_path / "nope.jpg")], env=fake_env(), cwd=str(REPO),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=300)
    assert bad.returncode == 2 and len(bad.stderr.decode().strip().splitlines()) == 1, bad.stderr.decode()
    cmd[cmd.index("--json") + 1] = str(tmp_path / "missing" / "doctor.json")  # refused before the run
    nowhere = subprocess.run(cmd, env=fake_env(), cwd=str(REPO), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             timeout=300)
    assert nowhere.returncode == 2 and nowhere.stdout == b"", nowhere.stdout.decode()[-2000:]
    assert nowhere.stderr.decode().splitlines() == ["blipd: doctor: cannot write %s: no such folder or not writable"
                                                    % cmd[cmd.index("--json") + 1]]
