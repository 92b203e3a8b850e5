"""The demo package on the demo clip, as config/demo.yaml plays it (a file), read with
`realtime: false` (as fast as the worker goes, on the clip's own time): the events must tell the
clip's scripted story (samples/demo.timeline.json). This is the newcomer's first run, checked,
in a few seconds instead of the clip's 100. RTSP cameras are covered by test_daemon.py."""
import json
from typing import Any, Dict, List, Optional

import pytest
import yaml

from tests.daemon_proc import REPO, DaemonProcess, EventCollector, free_tcp_endpoint

pytestmark = pytest.mark.integration

SAMPLE_EVERY_S = 0.5
CLIP = REPO / "samples" / "demo.mp4"
TIMELINE = REPO / "samples" / "demo.timeline.json"


def _segment_at(timeline: List[Dict[str, Any]], t: float) -> Optional[Dict[str, Any]]:
    for segment in timeline:
        if segment["start_s"] <= t < segment["end_s"]:
            return segment
    return None


def _appearances(timeline: List[Dict[str, Any]], prompt: str) -> List[List[float]]:
    """[start, end] of each stretch where `prompt` is present (adjacent segments merged)."""
    spans: List[List[float]] = []
    for segment in timeline:
        if prompt in segment["prompts_present"]:
            if spans and abs(spans[-1][1] - segment["start_s"]) < 1e-6:
                spans[-1][1] = segment["end_s"]
            else:
                spans.append([segment["start_s"], segment["end_s"]])
    return spans


def _near_boundary(timeline: List[Dict[str, Any]], t: float, margin: float) -> bool:
    return any(abs(t - s["start_s"]) < margin for s in timeline[1:])


def _accounted(event: Dict[str, Any]) -> bool:
    """A stats event in which every decoded frame has its end (none queued or in flight)."""
    return event["type"] == "stats" and event["decoded"] == (
        event["inferred"] + event["failed"] + sum(event["dropped"].values()))


def _end_index(events: List[Dict[str, Any]]) -> int:
    return next(i for i, e in enumerate(events) if e["type"] == "stream" and e["state"] in ("ended", "failed"))


def _clip_done(events: List[Dict[str, Any]]) -> bool:
    return any(e["type"] == "stream" and e["state"] in ("ended", "failed") for e in events)


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> Dict[str, Any]:
    """Play the whole clip once through the daemon; collect every event."""
    demo = yaml.safe_load((REPO / "config" / "demo.yaml").read_text())
    timeline = json.loads(TIMELINE.read_text())
    endpoint = free_tcp_endpoint()
    stream = dict(demo["streams"][0], url=str(CLIP), loop=False, realtime=False)
    stream["prompts"] = [dict(p, dwell_s=0, smoothing=0.8) for p in stream["prompts"]]
    config = dict(demo, streams=[stream])
    config["model"] = dict(demo["model"], package=str(REPO / "models" / "demo"))
    config["publish"] = dict(demo.get("publish", {}), bind=endpoint, heartbeat_s=5, stats_every_s=0.5)
    config["defaults"] = dict(demo.get("defaults", {}), sample_every_s=SAMPLE_EVERY_S, scene_change=0)
    path = tmp_path_factory.mktemp("demo") / "demo.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    with EventCollector(endpoint) as events, DaemonProcess(path) as daemon:
        events.wait_for(_clip_done, timeout=180)
        # once the file ended, a stats event with every frame accounted for holds the final counts
        got = events.wait_for(lambda evs: any(_accounted(e) for e in evs[_end_index(evs):]), timeout=30)
        assert daemon.terminate(timeout=15) == 0
    ended = [e for e in got if e["type"] == "stream" and e["state"] in ("ended", "failed")]
    assert ended[0]["state"] == "ended", ended
    return {"events": got, "timeline": timeline}


def test_every_sample_point_of_the_clip_is_inferred(demo_run: Dict[str, Any]) -> None:
    """realtime: false: nothing replaced or too old; every sample of the 100 s clip inferred."""
    events = demo_run["events"]
    final = [e for e in events[_end_index(events):] if _accounted(e)][-1]
    duration = demo_run["timeline"][-1]["end_s"]
    assert final["dropped"]["replaced"] == final["dropped"]["too_old"] == 0, final
    assert final["inferred"] == final["sampled"] == round(duration / SAMPLE_EVERY_S), {
        k: final[k] for k in ("decoded", "sampled", "inferred", "failed", "dropped")}
    assert final["decoded"] == final["sampled"] + sum(final["dropped"].values())


def test_captions_follow_the_timeline(demo_run: Dict[str, Any]) -> None:
    timeline = demo_run["timeline"]
    captions = [e for e in demo_run["events"] if e["type"] == "caption"
                and not _near_boundary(timeline, e["pts_s"], SAMPLE_EVERY_S)]
    assert len(captions) >= 5
    right = [e for e in captions if e["text"] == (_segment_at(timeline, e["pts_s"]) or {}).get("caption")]
    wrong = [(round(e["pts_s"], 1), e["text"]) for e in captions if e not in right]
    assert len(right) / len(captions) >= 0.9, wrong


def test_answers_follow_the_timeline(demo_run: Dict[str, Any]) -> None:
    timeline = demo_run["timeline"]
    answers = [e for e in demo_run["events"] if e["type"] == "answer"
               and not _near_boundary(timeline, e["pts_s"], SAMPLE_EVERY_S)]
    assert len(answers) >= 5
    right = [e for e in answers if e["answer"] == (_segment_at(timeline, e["pts_s"]) or {}).get("answers", {}).get(e["text"])]
    wrong = [(round(e["pts_s"], 1), e["text"], e["answer"]) for e in answers if e not in right]
    assert len(right) / len(answers) >= 0.9, wrong


@pytest.mark.parametrize("prompt", ["red_circle", "blue_square"])
def test_each_appearance_starts_and_ends_once(demo_run: Dict[str, Any], prompt: str) -> None:
    tolerance = 2 * SAMPLE_EVERY_S
    phases = [(e["phase"], e["pts_s"]) for e in demo_run["events"]
              if e["type"] == "match" and e["prompt"] == prompt and e["phase"] != "update"]
    spans = _appearances(demo_run["timeline"], prompt)
    assert spans, "the timeline must script this prompt"
    assert [p for p, _ in phases] == ["start", "end"] * len(spans), phases
    for (start, end), (_, t_start), (_, t_end) in zip(spans, phases[0::2], phases[1::2]):
        assert abs(t_start - start) <= tolerance, (prompt, start, t_start)
        assert abs(t_end - end) <= tolerance, (prompt, end, t_end)
