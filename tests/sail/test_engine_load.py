"""sail.Engine(...) holds the GIL while a bmodel loads (bind.cpp: no gil_scoped_release on the
constructor), so the service loads every engine before any reader starts: a start-up never stalls
live streams (a reload loads no engine: model changes wait for a restart)."""
import threading
from typing import List

import pytest
import yaml

from tests.daemon_proc import free_tcp_endpoint
from tests.integration.conftest import base_config, stream_entry
from tests.media import make_clip

pytestmark = [pytest.mark.sail, pytest.mark.integration]


def test_engines_load_before_any_reader_starts(seed_package, tmp_path, sail):
    from daemon.config.config import load_config
    from daemon.service import Service

    sail._configure(load_s=0.2)  # each Engine() holds the GIL this long
    clip = make_clip(tmp_path / "clip.mp4", seconds=1, fps=8, size=(160, 96))
    doc = base_config(seed_package.path, free_tcp_endpoint(), [stream_entry("cam", str(clip), loop=True, decoder="sail")])
    doc["model"]["backend"] = "sail"
    path = tmp_path / "blipd.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    service = Service(load_config(path))
    threads_at_load: List[List[str]] = []
    real = service._default_engine

    def spy(worker: int) -> object:
        engine = real(worker)  # every graph of the package loads here, in the worker's thread
        threads_at_load.append(sorted(t.name for t in threading.enumerate()))
        return engine

    service._default_engine = spy  # type: ignore[method-assign]
    service.start()
    try:
        readers_after = [t.name for t in threading.enumerate() if t.name.startswith("reader-")]
    finally:
        service.stop()
    assert threads_at_load, "the engine factory never ran"
    assert not [n for n in threads_at_load[0] if n.startswith("reader-")], threads_at_load[0]
    assert readers_after == ["reader-cam"]
