"""The proof: settings tuned on the demo clip hold on a clip they never saw.

Scan samples/demo.mp4, tune on its timeline, paste the YAML snippet into the config, make another
demo clip with another seed (its own script and timeline), scan it with the tuned config, and
score the matches that scan *published* (not a replay) against that clip's timeline."""
import json
from pathlib import Path
from typing import Any, Dict

import yaml

from daemon.config.config import PromptConfig
from daemon.tuning.labels import load_labels
from daemon.tuning.metrics import score_events
from daemon.tuning.tune import Setting, evaluate, published_intervals, series_of
from tests.tuning.conftest import DEMO_CONFIG, DEMO_TIMELINE, HELD_OUT_SEED, REPO, blipd
BUILT_IN = Setting.of(PromptConfig(id="p", text="p").model_dump())
"""PromptConfig's defaults: what a prompt without settings runs with."""


def test_tuned_settings_hold_on_a_held_out_clip(demo_scan: Dict[str, Any], heldout_clip: Path, tmp_path: Path) -> None:
    snippet = tmp_path / "prompts.yaml"
    proc = blipd("tune", "--timeline", demo_scan["json"], "--labels", DEMO_TIMELINE, "--out", snippet)
    assert proc.returncode == 0, proc.stderr
    config = yaml.safe_load(DEMO_CONFIG.read_text())
    config["model"]["package"] = str(REPO / "models" / "demo")
    config["streams"][0]["prompts"] = yaml.safe_load(snippet.read_text())
    clip = heldout_clip
    config["streams"][0]["url"] = str(clip)  # a camera's URL in real life: scan reads the files it is given
    tuned_config = tmp_path / "tuned.yaml"
    tuned_config.write_text(yaml.safe_dump(config, sort_keys=False))
    labels = load_labels(str(clip.with_name("heldout.timeline.json")))
    scan = tmp_path / "heldout.json"
    proc = blipd("scan", clip, "-c", tuned_config, "--json", scan)
    assert proc.returncode == 0, proc.stderr
    held_out = json.loads(scan.read_text())["files"][0]

    report = {}
    for prompt in config["streams"][0]["prompts"]:
        pid = prompt["id"]
        if not labels.get(pid):
            continue
        tuned = score_events(published_intervals(held_out["events"], pid), labels[pid])
        series = [series_of(held_out["samples"], pid)]
        demo_cfg = next(p for p in yaml.safe_load(DEMO_CONFIG.read_text())["streams"][0]["prompts"] if p["id"] == pid)
        before = evaluate(series, [labels[pid]], pid, Setting.of(PromptConfig(**demo_cfg).model_dump())).events
        built_in = evaluate(series, [labels[pid]], pid, BUILT_IN).events
        report[pid] = "tuned F1 %.2f (P %.2f R %.2f), config/demo.yaml's %.2f, built-in defaults' %.2f" % (
            tuned.f1, tuned.precision, tuned.recall, before.f1, built_in.f1)
        print("held-out seed %d, %s: %s" % (HELD_OUT_SEED, pid, report[pid]))
        assert tuned.f1 >= 0.9, (pid, report[pid])
    assert set(report) == {"red_circle", "blue_square"}  # both demo prompts appear in the held-out clip
