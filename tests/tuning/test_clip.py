"""Other demo clips for held-out checks: `--seed N` draws a script of its own; seed 0 is the sample's."""
import json
import subprocess
import sys
from pathlib import Path

import cv2
import pytest

from blip.demo import clip
from tests.tuning.conftest import DEMO_TIMELINE, HELD_OUT_S, HELD_OUT_SEED, REPO


def test_seed_0_is_the_committed_sample() -> None:
    assert clip.script_for(clip.DEFAULT_SEED) is clip.SCRIPT
    assert clip.Clip(clip.script_for(0)).timeline() == json.loads(DEMO_TIMELINE.read_text())


@pytest.mark.parametrize("seed", [1, 2, 3, 7, 11])
def test_a_drawn_script_is_a_usable_held_out_clip(seed: int) -> None:
    drawn = clip.Clip(clip.script_for(seed, 60.0))
    timeline = drawn.timeline()
    assert timeline == clip.Clip(clip.script_for(seed, 60.0)).timeline()  # the seed decides everything
    assert timeline != clip.timeline()
    assert timeline[0]["start_s"] == 0.0 and timeline[-1]["end_s"] == 60.0
    for before, after in zip(timeline, timeline[1:]):
        assert before["end_s"] == after["start_s"] and before["caption"] != after["caption"]
    for segment in timeline:
        assert segment["end_s"] - segment["start_s"] >= 8.0
        shown = drawn.scene_at((segment["start_s"] + segment["end_s"]) / 2)
        assert shown.caption() == segment["caption"]
    for pid in clip.DEMO_PROMPTS:
        present = [pid in s["prompts_present"] for s in timeline]
        assert any(present) and not all(present), (seed, pid)


def test_the_command_writes_a_clip_and_its_timeline(heldout_clip: Path, tmp_path: Path) -> None:
    timeline = json.loads(heldout_clip.with_name("heldout.timeline.json").read_text())
    assert timeline == clip.Clip(clip.script_for(HELD_OUT_SEED, HELD_OUT_S)).timeline()
    cap = cv2.VideoCapture(str(heldout_clip))
    try:
        assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == HELD_OUT_S * clip.FPS
    finally:
        cap.release()
    out = tmp_path / "other.mp4"
    refused = subprocess.run([sys.executable, "-m", "blip.demo.clip", "--duration", "24", "--out", str(out)],
                             cwd=str(REPO), timeout=60, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert refused.returncode == 2 and b"--duration needs a seed other than 0" in refused.stderr
