"""`blipd doctor` on a CPU-only config (config/demo.yaml, models/demo): no sail parts, and it says so;
what exists is run, timed and compared (the package against itself on ONNX Runtime CPU)."""
import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_doctor_on_the_demo_config_checks_what_exists(tmp_path):
    out = tmp_path / "doctor.json"
    cmd = [sys.executable, "-m", "daemon.commands.cli", "doctor", "-c", str(REPO / "config" / "demo.yaml"),
           "--reference", str(REPO / "models" / "demo"), "--runs", "2", "--json", str(out)]
    proc = subprocess.run(cmd, cwd=str(REPO), stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=300)
    table = proc.stdout.decode()
    assert proc.returncode == 0, table + proc.stderr.decode()[-2000:]
    report = json.loads(out.read_text())
    assert report["preflight_ok"] is True and report["problems"] == []
    assert report["sail_parts"] is False and report["sail_version"] is None and report["chip"] is None
    assert any("no sail parts" in note for note in report["notes"])
    assert report["decoder"] == {} and report["preprocess_max_abs_diff"] is None
    assert sorted(report["tasks"]) == ["answer", "caption", "match"]
    for task, entry in report["tasks"].items():
        assert entry["backend"] == "onnxruntime" and entry["median_ms"] > 0
        assert entry["score_max_diff"] == 0.0 if task == "match" else entry["tokens_identical"] is True
    assert report["graphs"] and all(ms > 0 for ms in report["graphs"].values())
    assert "no sail parts" in table and "OK: every check passed" in table


def test_doctor_refuses_a_bad_config_with_one_line(tmp_path):
    bad = tmp_path / "blipd.yaml"
    bad.write_text("model: {package: nowhere}\nstreams: []\nbogus: 1\n")
    proc = subprocess.run([sys.executable, "-m", "daemon.commands.cli", "doctor", "-c", str(bad), "--json",
                           str(tmp_path / "out.json")], cwd=str(REPO), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          timeout=120)
    assert proc.returncode == 2, proc.stderr.decode()
    assert str(bad) in proc.stderr.decode() and "Traceback" not in proc.stderr.decode()
    assert not (tmp_path / "out.json").exists()
