"""A synthetic daemon bus (a real XPUB socket sending schema-shaped events) and a bridge subprocess."""
import json
import time
import uuid
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import yaml
import zmq

from tests.bridges.mosquitto import wait_until
from tests.daemon_proc import CommandProcess



class FakeBus:
    """An XPUB like the daemon's: `event(type, stream, **fields)` stamps seq/boot and sends."""

    def __init__(self, endpoint: str, source: Optional[str] = None) -> None:
        self.endpoint = endpoint
        self.source = source
        self.boot = uuid.uuid4().hex[:12]
        self.seq: Dict[str, int] = {}
        self._ctx = zmq.Context()
        self.sock = self._ctx.socket(zmq.XPUB)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.setsockopt(zmq.SNDHWM, 100000)
        self.sock.setsockopt(zmq.XPUB_VERBOSE, 1)  # every subscribe reaches wait_subscriber, repeats too
        self.sock.bind(endpoint)

    def wait_subscriber(self, timeout: float = 15.0) -> None:
        """Block until a subscription arrives (so nothing is lost to the slow-joiner effect)."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not self.sock.poll(int(left * 1000)):
                raise AssertionError("no subscriber joined %s" % self.endpoint)
            if self.sock.recv()[:1] == b"\x01":
                return

    def event(self, kind: str, stream: str, jpeg: Optional[bytes] = None, **fields: Any) -> Dict[str, Any]:
        seq = self.seq[stream] = self.seq.get(stream, 0) + 1
        body: Dict[str, Any] = {"schema": 1, "type": kind, "stream": stream, "seq": seq, "boot": self.boot,
                                "time": "2026-12-03T08:00:00.000Z", "pts_s": None, "frame": None,
                                "latency_ms": None, "model": "test"}
        if self.source:
            body["source"] = self.source
        body.update(fields)
        parts = [("%s/%s" % (kind, stream)).encode(), json.dumps(body).encode()]
        if jpeg is not None:
            parts.append(jpeg)
        self.sock.send_multipart(parts)
        return body

    def close(self) -> None:
        self.sock.close(0)
        self._ctx.term()


class BridgeProcess(CommandProcess):
    """`python -m daemon.commands.cli bridge -c FILE` as a real subprocess, log captured."""

    def __init__(self, config: Dict[str, Any], folder: Path, env: Optional[Dict[str, str]] = None,
                 args: Sequence[str] = ()) -> None:
        self.path = Path(folder) / "bridge.yaml"
        self.path.write_text(yaml.safe_dump(config, sort_keys=False))
        super().__init__(["bridge"] + (list(args) or ["-c", str(self.path)]), env, log_prefix="bridge-")

    def wait_log(self, text: str, timeout: float) -> None:  # type: ignore[override]
        wait_until(lambda: text in self.log(), timeout, "bridge log line %r; log: %s" % (text, self.log()[-1500:]))


def metric(port: int, name: str, labels: str = "") -> Optional[float]:
    """One sample from a Prometheus text endpoint (None when absent or unreachable)."""
    import urllib.request

    try:
        with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port, timeout=2) as response:
            text = response.read().decode()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith(name + ("{" + labels + "}" if labels else "")) and not line.startswith("#"):
            return float(line.rsplit(" ", 1)[1])
    return None


def free_endpoint() -> str:
    from tests.daemon_proc import free_tcp_endpoint

    return free_tcp_endpoint()


__all__ = ["FakeBus", "BridgeProcess", "metric", "free_endpoint", "List"]
