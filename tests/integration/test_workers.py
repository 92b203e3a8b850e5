"""Two workers on the real daemon: each stream is held by the worker that took its frame until it
is done (Scheduler.get(hold=True) / done), so its events keep capture order, both streams keep
flowing (a missing `done` would starve a stream after one frame) and every frame is accounted.
The overtaking this prevents is rare in a run; tests/daemon/test_scheduler.py shows the mechanism."""
from pathlib import Path
from typing import Any, Dict, List

import pytest

from tests.daemon_proc import DaemonProcess, EventCollector, free_tcp_endpoint, seq_gaps
from tests.integration.conftest import base_config, stream_entry

pytestmark = pytest.mark.integration

EVERY_FRAME_S = 1e-6
CAPTIONS_PER_STREAM = 150


def _config(package: Path, clip: Path, endpoint: str) -> Dict[str, Any]:
    streams = [stream_entry(name, str(clip), loop=True, caption={"enabled": True, "every_s": EVERY_FRAME_S},
                            questions=[]) for name in ("a", "b")]
    config = base_config(package, endpoint, streams)
    config["model"].update(workers=2, threads=1)
    config["publish"].update(heartbeat_s=EVERY_FRAME_S, stats_every_s=0.5)
    config["defaults"].update(sample_every_s=0.001, slot_size=2)
    return config


def test_two_workers_keep_each_streams_events_in_capture_order(tiny_package, clip, write_config) -> None:
    endpoint = free_tcp_endpoint()
    path = write_config(_config(tiny_package, clip, endpoint))
    with EventCollector(endpoint) as events, DaemonProcess(path) as daemon:
        events.wait_for(lambda evs: all(sum(1 for e in evs if e["type"] == "caption" and e["stream"] == s)
                                        >= CAPTIONS_PER_STREAM for s in ("a", "b")), timeout=180)
        assert daemon.terminate(timeout=15) == 0
        events.wait_for(lambda evs: evs[-1]["type"] == "stats", 10)
    got = events.snapshot()
    assert seq_gaps(got) == {}
    for name in ("a", "b"):
        times: List[str] = [e["time"] for e in got if e["type"] == "caption" and e["stream"] == name]
        back = [(i, times[i - 1], t) for i, t in enumerate(times) if i and t < times[i - 1]]
        assert back == [], "stream %s: a caption of an earlier frame published after a later one" % name
    final = {e["stream"]: e for e in got if e["type"] == "stats"}
    for name, last in final.items():
        assert last["decoded"] == last["inferred"] + last["failed"] + sum(last["dropped"].values())
