"""Fixtures for tests that run the daemon as a subprocess against real RTSP servers and ZeroMQ."""
import json
from pathlib import Path
from typing import Any, Callable, Dict, List

import pytest
import yaml

from tests import media

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def schema() -> Dict[str, Any]:
    return json.loads((REPO / "config" / "events.schema.json").read_text())


@pytest.fixture(scope="session")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return media.make_clip(tmp_path_factory.mktemp("clip") / "moving.mp4", 3, fps=25)


@pytest.fixture
def write_config(tmp_path: Path) -> Callable[..., Path]:
    """Write a config dict as YAML in the test's folder; returns the path."""

    def write(config: Dict[str, Any], name: str = "blipd.yaml") -> Path:
        path = tmp_path / name
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        return path

    return write


def stream_entry(name: str, url: str, **extra: Any) -> Dict[str, Any]:
    entry: Dict[str, Any] = {
        "name": name,
        "url": url,
        "caption": {"enabled": True, "every_s": 1},
        "prompts": [{"id": "thing", "text": "a red circle", "enter": 0.6, "exit": 0.4, "dwell_s": 0}],
        "questions": [{"id": "what", "text": "what is it?", "every_s": 2}],
    }
    entry.update(extra)
    return entry


def base_config(package: Path, endpoint: str, streams: List[Dict[str, Any]]) -> Dict[str, Any]:
    return {
        "model": {"package": str(package)},
        "publish": {"bind": endpoint, "stats_every_s": 1, "heartbeat_s": 2},
        "metrics": {"port": 0},
        "defaults": {"sample_every_s": 0.5, "scene_change": 0, "stall_timeout_s": 5,
                     "open_timeout_s": 5, "read_timeout_s": 5},
        "streams": streams,
    }
