"""Scans of the demo clip shared by the tuning tests: `blipd scan` runs as a real subprocess."""
import json
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, List

import pytest

REPO = Path(__file__).resolve().parents[2]
DEMO_CLIP = REPO / "samples" / "demo.mp4"
DEMO_TIMELINE = REPO / "samples" / "demo.timeline.json"
DEMO_CONFIG = REPO / "config" / "demo.yaml"
CLI_TIMEOUT_S = 180


def blipd(*args: Any, timeout: float = CLI_TIMEOUT_S) -> "subprocess.CompletedProcess[str]":
    """`blipd ARGS...` as a subprocess in the repository; stdout and stderr captured as text."""
    return subprocess.run([sys.executable, "-m", "daemon.commands.cli"] + [str(a) for a in args], cwd=str(REPO),
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True, timeout=timeout)


def error_lines(proc: "subprocess.CompletedProcess[str]") -> List[str]:
    """The `blipd: ...` lines a command wrote (decoder chatter from FFmpeg left aside)."""
    return [line for line in proc.stderr.splitlines() if line.startswith("blipd:")]


@pytest.fixture(scope="session")
def demo_scan(tmp_path_factory: pytest.TempPathFactory) -> Dict[str, Any]:
    """samples/demo.mp4 scanned with config/demo.yaml: {"json", "csv", "doc", "stdout"}."""
    root = tmp_path_factory.mktemp("scan")
    out_json, out_csv = root / "demo.json", root / "demo.csv"
    proc = blipd("scan", DEMO_CLIP, "-c", DEMO_CONFIG, "--json", out_json, "--csv", out_csv)
    assert proc.returncode == 0, proc.stderr
    return {"json": out_json, "csv": out_csv, "doc": json.loads(out_json.read_text()), "stdout": proc.stdout,
            "stderr": proc.stderr}


HELD_OUT_SEED = 1
HELD_OUT_S = 60.0


@pytest.fixture(scope="session")
def heldout_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`python -m blip.demo.clip --seed 1 --duration 60`: another script than the sample's; its
    timeline is beside it (heldout.timeline.json)."""
    clip = tmp_path_factory.mktemp("heldout") / "heldout.mp4"
    subprocess.run([sys.executable, "-m", "blip.demo.clip", "--seed", str(HELD_OUT_SEED), "--duration",
                    str(HELD_OUT_S), "--out", str(clip)], cwd=str(REPO), check=True, timeout=300,
                   stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    return clip
