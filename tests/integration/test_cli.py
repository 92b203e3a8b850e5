"""`blipd` commands as a user runs them: check, the one-shot tasks, keys. Exit codes and one-line errors."""
import json
import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import List

import cv2
import numpy as np
import pytest
import yaml

from tests.daemon_proc import REPO, free_tcp_endpoint
from tests.integration.conftest import base_config, stream_entry


def blipd(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "daemon.commands.cli", *args], cwd=str(REPO), capture_output=True,
                          text=True, timeout=timeout)


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    good = root / "good.png"
    cv2.imwrite(str(good), rng.integers(0, 255, (90, 120, 3), dtype=np.uint8))
    zero = root / "zero.jpg"
    zero.write_bytes(b"")
    corrupt = root / "corrupt.jpg"
    corrupt.write_bytes(b"\xff\xd8\xff\xe0" + bytes(rng.integers(0, 255, 4000, dtype=np.uint8)))
    return {"good": good, "zero": zero, "corrupt": corrupt, "missing": root / "missing.jpg"}


def _one_line_errors(stderr: str) -> List[str]:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert all(line.startswith("blipd: ") for line in lines), stderr
    assert "Traceback" not in stderr
    return lines


def test_caption_match_ask_json(tiny_package: Path, images: dict) -> None:
    out = blipd("caption", str(images["good"]), "--model", str(tiny_package), "--json")
    assert out.returncode == 0, out.stderr
    assert isinstance(json.loads(out.stdout)["caption"], str)
    out = blipd("match", str(images["good"]), "--prompt", "a red circle", "--prompt", "a dog",
                "--model", str(tiny_package), "--json")
    scores = json.loads(out.stdout)["match"]
    assert set(scores) == {"a red circle", "a dog"} and all(0.0 <= v <= 1.0 for v in scores.values())
    out = blipd("ask", str(images["good"]), "--question", "what is it?", "--model", str(tiny_package), "--json")
    assert out.returncode == 0 and "what is it?" in json.loads(out.stdout)["answer"]


@pytest.mark.parametrize("kind", ["zero", "corrupt", "missing"])
def test_bad_image_is_one_line_and_exit_2(tiny_package: Path, images: dict, kind: str) -> None:
    out = blipd("caption", str(images[kind]), str(images["good"]), "--model", str(tiny_package))
    assert out.returncode == 2
    lines = _one_line_errors(out.stderr)
    assert len(lines) == 1 and str(images[kind].name) in lines[0]
    assert str(images["good"]) in out.stdout, "the good image after the bad one is still captioned"


def test_missing_model_package(images: dict, tmp_path: Path) -> None:
    out = blipd("caption", str(images["good"]), "--model", str(tmp_path / "nothing"))
    assert out.returncode == 2
    assert len(_one_line_errors(out.stderr)) == 1


def test_check_good_and_bad(tiny_package: Path, clip: Path, tmp_path: Path) -> None:
    config = tmp_path / "good.yaml"
    config.write_text(yaml.safe_dump(base_config(tiny_package, free_tcp_endpoint(), [stream_entry("a", str(clip))])))
    out = blipd("check", "-c", str(config))
    assert out.returncode == 0, out.stderr
    assert "ok:" in out.stdout
    bad = tmp_path / "bad.yaml"
    entry = stream_entry("a", str(clip), caption={"enabled": True, "every_s": -1})
    bad.write_text(yaml.safe_dump(base_config(tiny_package, free_tcp_endpoint(), [entry])))
    out = blipd("check", "-c", str(bad))
    assert out.returncode == 2
    lines = _one_line_errors(out.stderr)
    assert len(lines) == 1 and "bad.yaml:" in lines[0] and "streams[0].caption.every_s" in lines[0], lines


def test_keys_writes_private_secret(tmp_path: Path) -> None:
    out = blipd("keys", "--out", str(tmp_path / "keys"))
    assert out.returncode == 0, out.stderr
    secret = tmp_path / "keys" / "server.key_secret"
    assert secret.exists()
    assert stat.S_IMODE(os.stat(secret).st_mode) == 0o600
