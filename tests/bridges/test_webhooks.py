"""Webhooks against a real local HTTP server: the signature verifies, filters hold, retries happen
after 5xx, a 4xx is not retried, and the queue bound holds while the server hangs."""
import hashlib
import hmac
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Dict, List

import pytest

from tests.bridges.buses import BridgeProcess, FakeBus, free_endpoint, metric
from tests.bridges.mosquitto import free_port, wait_until

pytestmark = pytest.mark.integration

SECRET = "hook-secret-42"


class Hook:
    """A real HTTP server recording POSTs; `fail` answers the next N with `status`; `gate` holds them."""

    def __init__(self) -> None:
        self.requests: List[Dict[str, Any]] = []
        self.fail = 0
        self.arrived = 0
        self.status = 503
        self.gate = threading.Event()
        self.gate.set()
        self.lock = threading.Lock()
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with hook.lock:
                    hook.arrived += 1
                hook.gate.wait(60)
                with hook.lock:
                    failing = hook.fail > 0
                    hook.fail -= 1 if failing else 0
                    hook.requests.append({"headers": dict(self.headers), "body": body,
                                          "status": hook.status if failing else 200})
                self.send_response(hook.status if failing else 200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = "http://127.0.0.1:%d/hook" % self.server.server_port
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def ok(self) -> List[Dict[str, Any]]:
        with self.lock:
            return [json.loads(r["body"]) for r in self.requests if r["status"] == 200]

    def close(self) -> None:
        self.gate.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def hook():
    server = Hook()
    yield server
    server.close()


def _match(bus: FakeBus, prompt: str, phase: str) -> Dict[str, Any]:
    return bus.event("match", "cam", prompt=prompt, text="a " + prompt, phase=phase, score=0.8, raw_score=0.8,
                     peak=0.8, started=None, duration_s=0.0)


def _config(endpoint: str, hook: Hook, metrics: int, **extra: Any) -> Dict[str, Any]:
    entry = {"url": hook.url, "secret_env": "HOOK_SECRET", "backoff_initial_s": 0.05, "backoff_max_s": 0.2}
    entry.update(extra)
    return {"name": "hooks", "sources": [{"connect": endpoint}], "webhooks": [entry], "metrics": {"port": metrics}}


def test_signature_filters_and_retries(hook: Hook, tmp_path: Path) -> None:
    endpoint = free_endpoint()
    bus = FakeBus(endpoint)
    config = _config(endpoint, hook, 0, types=["match", "answer"], prompts=["person"], max_attempts=4)
    try:
        with BridgeProcess(config, tmp_path, env={"HOOK_SECRET": SECRET}) as bridge:
            bus.wait_subscriber()
            bus.event("caption", "cam", text="not wanted", previous=None)       # type filtered out
            _match(bus, "car", "start")                                      # prompt filtered out
            hook.fail = 2                                                    # the next two get 503
            first = _match(bus, "person", "start")
            _match(bus, "person", "update")                                  # phase filtered out
            answer = bus.event("answer", "cam", question="q", text="q?", answer="yes", previous=None)
            last = _match(bus, "person", "end")
            wait_until(lambda: len(hook.ok()) == 3, 30, "three deliveries")
            assert hook.ok() == [first, answer, last]
            assert [r["status"] for r in hook.requests] == [503, 503, 200, 200, 200]
            for request in hook.requests:
                signature = request["headers"]["X-Blipd-Signature-256"]
                expected = "sha256=" + hmac.new(SECRET.encode(), request["body"], hashlib.sha256).hexdigest()
                assert hmac.compare_digest(signature, expected)
            hook.status, hook.fail = 400, 1                                   # a 4xx: given up at once
            _match(bus, "person", "start")
            wait_until(lambda: len(hook.requests) == 6, 20, "the 400")
            bus.event("answer", "cam", question="q", text="q?", answer="no", previous=None)
            wait_until(lambda: len(hook.ok()) == 4, 20, "the next event after the 400")
            assert [r["status"] for r in hook.requests[5:]] == [400, 200]
            assert bridge.terminate(timeout=12) == 0
            assert SECRET not in bridge.log()
            assert "HTTP 400, not retried" in bridge.log()
    finally:
        bus.close()


def test_queue_bound_holds_while_the_server_hangs(hook: Hook, tmp_path: Path) -> None:
    endpoint, port = free_endpoint(), free_port()
    bus = FakeBus(endpoint)
    config = _config(endpoint, hook, port, types=["caption"], queue_size=5, timeout_s=60)
    try:
        with BridgeProcess(config, tmp_path, env={"HOOK_SECRET": SECRET}) as bridge:
            bus.wait_subscriber()
            hook.gate.clear()
            sent = [bus.event("caption", "cam", text="c0", previous=None)]
            wait_until(lambda: hook.arrived == 1, 20, "the first request to hang in the server")
            sent += [bus.event("caption", "cam", text="c%d" % n, previous=None) for n in range(1, 20)]
            # one request hangs in the server, five wait in the queue, fourteen overflow
            wait_until(lambda: metric(port, "blipd_bridge_sink_overflow_total", 'sink="webhook0"') == 14.0, 30,
                       "14 overflowed")
            assert metric(port, "blipd_bridge_sink_queued", 'sink="webhook0"') == 5.0
            hook.gate.set()
            wait_until(lambda: len(hook.ok()) == 6, 30, "six deliveries")
            assert hook.ok() == sent[:6]
            wait_until(lambda: metric(port, "blipd_bridge_sink_delivered_total", 'sink="webhook0"') == 6.0, 10,
                       "delivered count")
            assert bridge.terminate(timeout=12) == 0
    finally:
        bus.close()
