"""How long a camera stream waits to go online beside a camera that accepts TCP and never answers.

OpenCV serialises FFmpeg opens behind one process-wide lock, so without the probe
(daemon/pipeline/sources/probe.py) a silent camera held every other stream's open for its whole
open timeout. Three runs of the same live RTSP stream (tests/rtsp.py's server, OpenCV decoder),
each the time from its reader's start to `online`:

  alone           the reference: the RTSP server's own start-up (first key frame) included
  beside, probe   beside a silent camera that started first (the daemon as it is)
  beside, no probe  the same with the probe turned off (the daemon before the fix)

    .venv/bin/python bench/open_lock.py --json open_lock.json [--silent-timeout 20]

Prints the three times and their ratios to `alone`; nothing here asserts timing. ~30 s.
"""
import argparse
import json
import socket
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.common import load_note, machine_info  # noqa: E402
from daemon.counters import StreamCounters  # noqa: E402
from daemon.pipeline.sampler import Sampler  # noqa: E402
from daemon.pipeline.sources import factory  # noqa: E402
from daemon.pipeline.sources.base import SourceSpec  # noqa: E402
from daemon.pipeline.sources.supervisor import StreamStatus, StreamSupervisor, SupervisorPolicy  # noqa: E402
from daemon.states import SourceState  # noqa: E402
from tests.rtsp import RtspServer  # noqa: E402

LIVE_OPEN_TIMEOUT_S = 10.0
SILENT_HEAD_START_S = 0.3


def _supervisor(name: str, url: str, open_timeout_s: float,
                on_state: Callable[[StreamStatus], None]) -> StreamSupervisor:
    spec = SourceSpec(name=name, url=url, is_live=True, open_timeout_s=open_timeout_s, read_timeout_s=open_timeout_s)
    return StreamSupervisor(spec, Sampler(1.0), lambda frame: None, StreamCounters(name), on_state,
                            SupervisorPolicy(backoff_initial_s=0.05, backoff_max_s=0.1))


def time_to_online(live_url: str, silent_url: Optional[str], silent_timeout_s: float) -> float:
    """Seconds from the live reader's start to its `online` (NaN if it never came)."""
    online: Dict[str, float] = {}

    def on_state(status: StreamStatus) -> None:
        if status.state is SourceState.ONLINE:
            online.setdefault(status.stream, time.monotonic())

    started: List[StreamSupervisor] = []
    try:
        if silent_url is not None:
            started.append(_supervisor("silent", silent_url, silent_timeout_s, on_state))
            started[-1].start()
            time.sleep(SILENT_HEAD_START_S)  # the silent camera's open is under way first (bench pacing)
        began = time.monotonic()
        started.append(_supervisor("live", live_url, LIVE_OPEN_TIMEOUT_S, on_state))
        started[-1].start()
        deadline = began + silent_timeout_s + LIVE_OPEN_TIMEOUT_S + 10
        while "live" not in online and time.monotonic() < deadline:
            time.sleep(0.01)  # polling the reader's state
        return online.get("live", float("nan")) - began
    finally:
        for sup in started:
            sup.stop(0.1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", help="write the figures here")
    parser.add_argument("--silent-timeout", type=float, default=20.0, help="the silent camera's open timeout, s")
    args = parser.parse_args()

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)  # the kernel completes handshakes; nobody ever answers
    silent = "rtsp://127.0.0.1:%d/stream1" % listener.getsockname()[1]
    real_probe = factory.probe
    results: Dict[str, float] = {}
    try:
        with RtspServer({"live": "h264"}) as server:
            live = server.url("live")
            time_to_online(live, None, args.silent_timeout)  # warm-up: the server's first client
            results["alone_s"] = time_to_online(live, None, args.silent_timeout)
            results["beside_silent_probe_s"] = time_to_online(live, silent, args.silent_timeout)
            factory.probe = lambda url, timeout_s=0.0: None  # type: ignore[assignment]
            try:
                results["beside_silent_no_probe_s"] = time_to_online(live, silent, args.silent_timeout)
            finally:
                factory.probe = real_probe  # type: ignore[assignment]
    finally:
        listener.close()
    alone = results["alone_s"]
    print("live stream online after: alone %.2f s; beside a silent camera (open timeout %.0f s): "
          "with the probe %.2f s (x%.2f), without %.2f s (x%.2f)"
          % (alone, args.silent_timeout, results["beside_silent_probe_s"], results["beside_silent_probe_s"] / alone,
             results["beside_silent_no_probe_s"], results["beside_silent_no_probe_s"] / alone))
    print(load_note())
    if args.json:
        doc: Dict[str, Any] = dict(results, silent_open_timeout_s=args.silent_timeout, machine=machine_info())
        Path(args.json).write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
