"""`blipd scan` is the daemon: the events it reports for a file equal the events `blipd run`
publishes for the same file read with `realtime: false` (types, phases, captions, answers, the
frames they came from, scores, in order). Both run config/demo.yaml's stream, with and without
its scene gate (with it, the daemon's reader waits for the worker to settle each frame before the
next gate decision, as the scan does: Sampler.wait_settled)."""
import json
from pathlib import Path
from typing import Any, Dict, List, Tuple

import pytest
import yaml

from tests.daemon_proc import DaemonProcess, EventCollector, free_tcp_endpoint
from tests.tuning.conftest import DEMO_CLIP, DEMO_CONFIG, REPO, blipd

pytestmark = pytest.mark.integration

RUN_TIMEOUT_S = 120


def _key(event: Dict[str, Any]) -> Tuple[Any, ...]:
    """What must agree; `time`, `latency_ms`, `boot` and the reasons' wording may differ."""
    kind = event["type"]
    if kind == "stream":
        return (kind, event["state"])
    if kind == "caption":
        return (kind, event["pts_s"], event["frame"], event["text"], event["previous"])
    if kind == "answer":
        return (kind, event["pts_s"], event["frame"], event["question"], event["answer"], event["previous"])
    return (kind, event["pts_s"], event["frame"], event["prompt"], event["phase"], event["score"], event["raw_score"])


def _finished(events: List[Dict[str, Any]]) -> bool:
    """The file ended and every match that started has ended."""
    if not any(e["type"] == "stream" and e["state"] == "ended" for e in events):
        return False
    phases = [e["phase"] for e in events if e["type"] == "match"]
    return phases.count("start") == phases.count("end")


@pytest.mark.parametrize("scene_change", [0.0, 0.008], ids=["gate-off", "gate-on"])
def test_scan_events_equal_the_daemon_events(tmp_path: Path, scene_change: float) -> None:
    config = yaml.safe_load(DEMO_CONFIG.read_text())
    config["defaults"]["scene_change"] = scene_change
    endpoint = free_tcp_endpoint()
    config["model"]["package"] = str(REPO / "models" / "demo")
    config["publish"] = dict(config.get("publish", {}), bind=endpoint)
    config["streams"][0].update(url=str(DEMO_CLIP), loop=False, realtime=False)
    path = tmp_path / "demo.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))

    with EventCollector(endpoint) as collector, DaemonProcess(path) as daemon:
        published = collector.wait_for(_finished, timeout=RUN_TIMEOUT_S)
        assert daemon.terminate(timeout=15) == 0
    published = [e for e in published if e["type"] != "stats"]
    assert published[0]["seq"] == 1, "the subscriber missed the first events (slow joiner)"

    out = tmp_path / "scan.json"
    proc = blipd("scan", DEMO_CLIP, "-c", path, "--json", out)
    assert proc.returncode == 0, proc.stderr
    scanned = json.loads(out.read_text())["files"][0]["events"]
    assert [_key(e) for e in scanned] == [_key(e) for e in published]
