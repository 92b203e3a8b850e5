"""`blipd scan` on the demo clip: the timeline's sample points, the events as the daemon publishes
them (schema, seq, phases) and bad input."""
import csv
import json
from pathlib import Path
from typing import Any, Dict

import jsonschema
import pytest

from daemon.tuning.labels import load_labels
from daemon.tuning.metrics import score_events
from daemon.tuning.tune import Setting, published_intervals, replay, series_of
from tests.tuning.conftest import DEMO_CLIP, DEMO_CONFIG, DEMO_TIMELINE, REPO, blipd, error_lines


def _file(demo_scan: Dict[str, Any]) -> Dict[str, Any]:
    return demo_scan["doc"]["files"][0]


def test_events_are_what_the_daemon_publishes(demo_scan: Dict[str, Any]) -> None:
    schema = json.loads((REPO / "config" / "events.schema.json").read_text())
    events = _file(demo_scan)["events"]
    for event in events:
        jsonschema.validate(event, schema)
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert {e["stream"] for e in events} == {"demo"}
    assert (events[0]["type"], events[0]["state"]) == ("stream", "online")
    assert (events[-1]["type"], events[-1]["state"]) == ("stream", "ended")
    assert {e["type"] for e in events} == {"stream", "caption", "match", "answer"}
    for prompt in ("red_circle", "blue_square"):
        phases = [e["phase"] for e in events if e["type"] == "match" and e["prompt"] == prompt]
        starts_ends = [p for p in phases if p != "update"]
        assert starts_ends and starts_ends == ["start", "end"] * (len(starts_ends) // 2), (prompt, phases)


def test_published_matches_tell_the_clip_story(demo_scan: Dict[str, Any]) -> None:
    labels = load_labels(str(DEMO_TIMELINE))
    for prompt, truth in labels.items():
        got = published_intervals(_file(demo_scan)["events"], prompt)
        assert score_events(got, truth).f1 == 1.0, (prompt, got, truth)


def test_captions_follow_the_timeline(demo_scan: Dict[str, Any]) -> None:
    timeline = json.loads(DEMO_TIMELINE.read_text())
    captions = [e for e in _file(demo_scan)["events"] if e["type"] == "caption"]
    assert len(captions) >= len(timeline)
    for event in captions:
        segment = next(s for s in timeline if s["start_s"] <= event["pts_s"] < s["end_s"])
        assert event["text"] == segment["caption"], event


def test_sample_points_lie_on_the_media_grid(demo_scan: Dict[str, Any]) -> None:
    doc = demo_scan["doc"]
    samples = _file(demo_scan)["samples"]
    period = doc["sample_every_s"]
    assert period == 0.5 and doc["stream"] == "demo" and [p["id"] for p in doc["prompts"]] == ["red_circle", "blue_square"]
    assert len(samples) == pytest.approx(100 / period, abs=1)
    gaps = {round(b["pts_s"] - a["pts_s"], 2) for a, b in zip(samples, samples[1:])}
    assert gaps <= {0.48, 0.52, 0.5}, gaps
    inferred = [s for s in samples if s["inferred"]]
    gated = [s for s in samples if not s["gate"]]
    counters = _file(demo_scan)["counters"]
    assert len(inferred) == counters["inferred"] and len(gated) == counters["dropped"]["unchanged"]
    assert gated and all(not s["raw"] and not s["inferred"] for s in gated)
    assert all(set(s["raw"]) == {"red_circle", "blue_square"} for s in inferred)
    assert all(set(s["score"]) == {"red_circle", "blue_square"} for s in samples)
    assert any(s["answers"] for s in inferred) and any(s["caption"] for s in inferred)


def test_replay_reproduces_the_scan_matches(demo_scan: Dict[str, Any]) -> None:
    """What tune relies on: replaying the recorded raw scores through the tracker with the scan's
    own settings publishes the same start/end times as the scan did."""
    doc = demo_scan["doc"]
    for prompt in doc["prompts"]:
        series = series_of(_file(demo_scan)["samples"], prompt["id"])
        assert replay(series, prompt["id"], Setting.of(prompt)) == \
            published_intervals(_file(demo_scan)["events"], prompt["id"])


def test_csv_has_a_row_per_sample_point(demo_scan: Dict[str, Any]) -> None:
    with open(demo_scan["csv"], newline="") as f:
        rows = list(csv.DictReader(f))
    samples = _file(demo_scan)["samples"]
    assert len(rows) == len(samples)
    assert {"pts_s", "gate", "caption", "red_circle_raw", "blue_square_score", "answer_shape_count"} <= set(rows[0])
    assert float(rows[10]["pts_s"]) == samples[10]["pts_s"]


def test_summary_and_plain_progress_lines(demo_scan: Dict[str, Any]) -> None:
    assert "x real time" in demo_scan["stdout"] and "samples/demo.mp4" in demo_scan["stdout"]
    progress = [line for line in demo_scan["stderr"].splitlines() if line.startswith("scan: ")]
    assert progress and "100%" in progress[-1] and "\r" not in demo_scan["stderr"]


def test_a_file_that_is_not_video_is_one_line_and_exit_2(tmp_path: Path) -> None:
    text = tmp_path / "notes.mp4"
    text.write_text("these are notes, not a video\n" * 20)
    proc = blipd("scan", text, "-c", DEMO_CONFIG, "--json", tmp_path / "out.json")
    assert proc.returncode == 2
    lines = error_lines(proc)
    assert len(lines) == 1 and str(text) in lines[0] and "not a video" in lines[0], proc.stderr
    assert not (tmp_path / "out.json").exists()
    missing = blipd("scan", tmp_path / "none.mp4", "-c", DEMO_CONFIG, "--json", tmp_path / "out.json")
    assert missing.returncode == 2 and "no such file" in error_lines(missing)[0]


def test_an_unknown_stream_is_one_line_and_exit_2(tmp_path: Path) -> None:
    proc = blipd("scan", DEMO_CLIP, "-c", DEMO_CONFIG, "--stream", "gate", "--json", tmp_path / "out.json")
    assert proc.returncode == 2
    assert error_lines(proc) == ["blipd: %s: no stream named 'gate' (streams: demo)" % DEMO_CONFIG]


def test_an_output_that_cannot_be_written_is_refused_before_scanning(tmp_path: Path) -> None:
    out = tmp_path / "missing-folder" / "out.json"
    proc = blipd("scan", DEMO_CLIP, "-c", DEMO_CONFIG, "--json", out)
    assert proc.returncode == 2
    assert error_lines(proc) == ["blipd: cannot write %s: no such folder or not writable" % out]
    assert "scan: " not in proc.stderr  # nothing was scanned
