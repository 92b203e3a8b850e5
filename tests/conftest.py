"""Shared pytest set-up. Helpers live beside the tests: models.py (tiny BLIP packages), media.py
(clips and bad files), rtsp.py (a real RTSP server), daemon_proc.py (the daemon as a subprocess)."""
from pathlib import Path
from typing import Callable, Dict, Iterator, List

import pytest

from tests import media
from tests.rtsp import RtspServer


@pytest.fixture(scope="session")
def tiny_package(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random BLIP package (caption, match, answer) exported with `blip.export` once per session."""
    from tests.models import make_tiny_package

    return make_tiny_package(tmp_path_factory.mktemp("tiny") / "package")


@pytest.fixture(scope="session")
def clips(tmp_path_factory: pytest.TempPathFactory) -> Dict[str, Path]:
    """moving: 2 s testsrc 320x240 @25 (50 frames); static: 4 s solid colour @25 (100 frames);
    short: 1 s testsrc @10 (10 frames)."""
    root = tmp_path_factory.mktemp("clips")
    return {
        "moving": media.make_clip(root / "moving.mp4", 2, fps=25),
        "static": media.make_static_clip(root / "static.mp4", 4, fps=25),
        "short": media.make_clip(root / "short.mp4", 1, fps=10),
    }


@pytest.fixture
def rtsp_factory() -> Iterator[Callable[..., RtspServer]]:
    """Start RTSP servers (`rtsp_factory({"live": "h264"})`); all are killed after the test."""
    servers: List[RtspServer] = []

    def start(mounts: Dict[str, str], **kwargs: object) -> RtspServer:
        server = RtspServer(mounts, **kwargs)  # type: ignore[arg-type]
        servers.append(server)
        return server.start()

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def rtsp_server(rtsp_factory: Callable[..., RtspServer]) -> RtspServer:
    """A live H.264 test pattern at mount `live` (320x240 @15); the test may kill/pause/restart it."""
    return rtsp_factory({"live": "h264"})
