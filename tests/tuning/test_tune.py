"""`blipd tune`: labels (both forms) and their errors, event-level scoring, the search, the CLI."""
import json
from pathlib import Path
from typing import Any, Dict, List

import pytest
import yaml

from daemon.config.config import PromptConfig
from daemon.tuning.errors import InputError
from daemon.tuning.labels import load_labels
from daemon.tuning.metrics import EventScore, iou, roc_auc, score_events
from daemon.tuning.tune import evaluate, tune_prompt
from tests.tuning.conftest import DEMO_CLIP, DEMO_CONFIG, DEMO_TIMELINE, blipd, error_lines


def _write(tmp_path: Path, data: Any, name: str = "labels.json") -> str:
    path = tmp_path / name
    path.write_text(json.dumps(data))
    return str(path)


# -- labels --------------------------------------------------------------------------------------
def test_demo_timeline_segments_merge_into_intervals() -> None:
    labels = load_labels(str(DEMO_TIMELINE), known=["red_circle", "blue_square", "yellow_star"])
    assert labels == {"red_circle": [(8.0, 44.0), (80.0, 92.0)], "blue_square": [(20.0, 68.0)]}


def test_prompt_form_sorts_and_reads_both_interval_spellings(tmp_path: Path) -> None:
    path = _write(tmp_path, {"prompts": {"car": [{"start_s": 30, "end_s": 40}, [5, 9.5]], "dog": []}})
    assert load_labels(path) == {"car": [(5.0, 9.5), (30.0, 40.0)], "dog": []}


@pytest.mark.parametrize("data, message", [
    ({"prompts": {"cat": [[1, 2]]}}, "unknown prompt id(s) cat (the scan has car, dog)"),
    ({"prompts": {"car": [[5, 10], [8, 12]]}}, "prompts.car: overlapping intervals [5, 10] and [8, 12]"),
    ({"prompts": {"car": [[10, 5]]}}, "prompts.car[0]: inverted interval: end 5 is not after start 10"),
    ({"prompts": {"car": [[1, "x"]]}}, "prompts.car[0].end_s: not a number of seconds"),
    ([{"start_s": 0, "end_s": 10, "prompts_present": ["car"]},
      {"start_s": 8, "end_s": 20, "prompts_present": []}], "segments: overlapping intervals [0, 10] and [8, 20]"),
    ([{"start_s": 4, "end_s": 2, "prompts_present": []}], "segment 0: inverted interval"),
    ({"car": [[1, 2]]}, 'expected {"prompts"'),
])
def test_bad_labels_are_one_line_naming_the_file_and_item(tmp_path: Path, data: Any, message: str) -> None:
    path = _write(tmp_path, data)
    with pytest.raises(InputError) as error:
        load_labels(path, known=["car", "dog"])
    text = str(error.value)
    assert "\n" not in text and text.startswith(path + ": ") and message in text, text


# -- scoring -------------------------------------------------------------------------------------
def test_each_labelled_interval_is_hit_once_at_iou_half() -> None:
    assert iou((0, 10), (5, 15)) == pytest.approx(1 / 3)
    truth = [(10.0, 20.0), (40.0, 50.0)]
    # two published intervals overlap the first label; only one can hit it; the other is a false start
    score = score_events([(11.0, 20.0), (12.0, 19.0), (60.0, 61.0)], truth)
    assert (score.hits, score.false_starts, score.missed) == (1, 2, 1)
    assert score.delays == (1.0,)
    assert score_events([(10.0, 14.0)], truth).hits == 0  # IoU 0.4: a miss and a false start
    assert EventScore(0, 0, 0).f1 == 1.0  # nothing to find, nothing published


def test_roc_auc() -> None:
    assert roc_auc([0.1, 0.2, 0.8, 0.9], [False, False, True, True]) == 1.0
    assert roc_auc([0.5, 0.5], [True, False]) == 0.5
    assert roc_auc([0.9, 0.1, 0.95], [False, True, True]) == 0.5
    assert roc_auc([0.9, 0.1, 0.8], [False, True, True]) == 0.0
    assert roc_auc([0.3], [True]) is None


# -- search --------------------------------------------------------------------------------------
def _samples(scores: List[float]) -> List[Dict[str, Any]]:
    return [{"pts_s": float(t), "raw": {"p": s}} for t, s in enumerate(scores)]


def test_search_beats_settings_that_flap_on_a_noisy_trace() -> None:
    """Present 20-50 s with a score dipping low every fourth second, absent elsewhere with spikes:
    the config's settings (no smoothing, no dwell, tight exit) start and end many times; the
    search finds settings that give one match per labelled interval."""
    scores = []
    for t in range(80):
        present = 20 <= t < 50
        dip = t % 4 == 1
        scores.append((0.25 if dip else 0.85) if present else (0.75 if t in (5, 63) else 0.05))
    prompt = {"id": "p", "text": "x", "enter": 0.6, "exit": 0.5, "dwell_s": 0, "smoothing": 1.0, "cooldown_s": 0}
    result = tune_prompt(prompt, [{"samples": _samples(scores)}], [[(20.0, 50.0)]], 1.0)
    assert result.before.events.f1 < 0.5
    assert result.chosen.events.f1 == 1.0 and result.chosen.events.hits == 1
    assert result.auc is not None and result.auc > 0.8
    # the chosen setting is a real tracker setting: replaying it again gives the same outcome
    again = evaluate([[(float(t), s) for t, s in enumerate(scores)]], [[(20.0, 50.0)]], "p", result.chosen.setting)
    assert again.events == result.chosen.events


def test_a_config_setting_off_the_grid_with_enter_0_can_tie_for_best() -> None:
    """`enter: 0` is a valid config (match whenever scored); when it ties the grid's best F1, the
    tie-break's neighbour lookup must not divide by it."""
    prompt = {"id": "p", "text": "x", "enter": 0.0, "exit": 0.0, "dwell_s": 0, "smoothing": 1.0, "cooldown_s": 0}
    result = tune_prompt(prompt, [{"samples": _samples([0.85] * 40)}], [[(0.0, 40.0)]], 1.0)
    assert result.before.events.f1 == 1.0 and result.chosen.events.f1 == 1.0


# -- the command ---------------------------------------------------------------------------------
def test_tune_on_the_demo_scan_prints_writes_and_plots(demo_scan: Dict[str, Any], tmp_path: Path) -> None:
    out, png = tmp_path / "prompts.yaml", tmp_path / "tune.png"
    proc = blipd("tune", "--timeline", demo_scan["json"], "--labels", DEMO_TIMELINE, "--out", out, "--png", png)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].split()[:3] == ["prompt", "enter", "exit"] and "F1" in lines[0]
    for prompt in ("red_circle", "blue_square"):
        row = next(line.split() for line in lines if line.startswith(prompt + " "))
        assert row[8] == "1.00", row  # event-level F1 of the chosen settings
    entries = yaml.safe_load(out.read_text())
    assert [e["id"] for e in entries] == ["red_circle", "blue_square"]
    for entry in entries:
        PromptConfig(**entry)  # pastes under `prompts:` as is
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10000


def test_tune_bad_input_is_one_line_and_exit_2(demo_scan: Dict[str, Any], tmp_path: Path) -> None:
    unknown = _write(tmp_path, {"prompts": {"red_circle": [[8, 44]], "green_star": [[1, 2]]}}, "unknown.json")
    proc = blipd("tune", "--timeline", demo_scan["json"], "--labels", unknown)
    assert proc.returncode == 2 and error_lines(proc) == [
        "blipd: %s: unknown prompt id(s) green_star (the scan has red_circle, blue_square)" % unknown]
    overlapping = _write(tmp_path, {"prompts": {"red_circle": [[8, 44], [40, 50]]}}, "overlap.json")
    proc = blipd("tune", "--timeline", demo_scan["json"], "--labels", overlapping)
    assert proc.returncode == 2 and "overlapping intervals" in error_lines(proc)[0]
    inverted = _write(tmp_path, {"prompts": {"red_circle": [[44, 8]]}}, "inverted.json")
    proc = blipd("tune", "--timeline", demo_scan["json"], "--labels", inverted)
    assert proc.returncode == 2 and "inverted interval" in error_lines(proc)[0]
    proc = blipd("tune", "--timeline", DEMO_TIMELINE, "--labels", DEMO_TIMELINE)
    assert proc.returncode == 2 and "not a timeline written by `blipd scan`" in error_lines(proc)[0]
    proc = blipd("tune", "--timeline", demo_scan["json"], "--labels", DEMO_TIMELINE, "--labels", DEMO_TIMELINE)
    assert proc.returncode == 2 and "give --labels once per file" in error_lines(proc)[0]


def test_tune_on_two_files_at_once(heldout_clip: Path, tmp_path: Path) -> None:
    scan = tmp_path / "both.json"
    proc = blipd("scan", DEMO_CLIP, heldout_clip, "-c", DEMO_CONFIG, "--json", scan)
    assert proc.returncode == 0, proc.stderr
    assert len(proc.stdout.splitlines()) == 2  # one summary line per file
    doc = json.loads(scan.read_text())
    assert [f["file"] for f in doc["files"]] == [str(DEMO_CLIP), str(heldout_clip)]
    assert all(f["events"][0]["seq"] == 1 for f in doc["files"])  # each file is a stream start of its own
    heldout_labels = heldout_clip.with_name("heldout.timeline.json")
    proc = blipd("tune", "--timeline", scan, "--labels", DEMO_TIMELINE, "--labels", heldout_labels)
    assert proc.returncode == 0, proc.stderr
    truth = load_labels(str(heldout_labels))
    for pid, on_demo in (("red_circle", 2), ("blue_square", 1)):
        count = on_demo + len(truth.get(pid, []))
        assert "%s: %d labelled, %d hit, 0 missed, 0 false start(s)" % (pid, count, count) in proc.stdout


@pytest.mark.parametrize("damage", [
    lambda doc: doc["files"][0]["samples"][0]["raw"].update(red_circle="0.9"),
    lambda doc: doc["files"][0]["samples"][0].update(pts_s=None),
    lambda doc: doc["prompts"][0].update(enter="high"),
])
def test_damaged_timeline_is_one_input_error(tmp_path: Path, damage: Any) -> None:
    from daemon.tuning import timeline

    prompt = {"id": "red_circle", "text": "a red circle", "enter": 0.7, "exit": 0.5, "dwell_s": 1,
              "smoothing": 0.5, "cooldown_s": 0}
    doc = {"format": timeline.FORMAT, "version": timeline.VERSION, "prompts": [prompt],
           "files": [{"file": "a.mp4", "samples": [{"pts_s": 0.0, "raw": {"red_circle": 0.2}}]}]}
    good = _write(tmp_path, doc, "good.json")
    assert timeline.load(good)["prompts"] == [prompt]
    damage(doc)
    with pytest.raises(InputError, match="damaged timeline"):
        timeline.load(_write(tmp_path, doc, "damaged.json"))
