"""bench/bridge.py: events through bus -> `blipd bridge` -> Mosquitto -> subscriber, at QoS 1.

    python bench/bridge.py --json OUT [--events 20000] [--rate 200] [--seconds 10]

Two figures, each beside a baseline measured in the same run (a paho publisher writing the same
payloads straight to the same broker, no bus and no bridge):
  throughput  N events published on a real XPUB as fast as possible; events/s = N / (last received
              at the subscriber - first sent). Target >= 2,000 events/s.
  latency     events at a steady `--rate` for `--seconds`; per event, subscriber receive time - bus
              send time (both on this machine's clock), p50/p95/p99. Target p95 <= 50 ms at 200/s.
The bridge runs as a real subprocess (`blipd bridge -c`), Mosquitto is Debian's, the subscriber a
paho client at QoS 1. Each event also updates a retained state topic, as in production.
"""
import argparse
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Dict, List, Tuple

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.common import percentile  # noqa: E402
from daemon.bridges.mqtt_sink import make_client  # noqa: E402
from tests.bridges.buses import BridgeProcess, FakeBus, free_endpoint  # noqa: E402
from tests.bridges.mosquitto import Mosquitto, wait_until  # noqa: E402

TOPIC = "blipd/bench/caption"
TEXT = "a red circle on the left and a yellow star in the middle"


class Receiver:
    """A paho subscriber at QoS 1 that timestamps every message."""

    def __init__(self, port: int, topic: str) -> None:
        self.got: List[Tuple[float, bytes]] = []
        self.lock = threading.Lock()
        self.client = make_client("bench-receiver")
        self.ready = threading.Event()
        self.client.on_connect = lambda c, *a: (c.subscribe(topic, qos=1), self.ready.set())
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port, 30)
        self.client.loop_start()
        wait_until(self.ready.is_set, 10, "the receiver to subscribe")
        time.sleep(0.2)  # the SUBACK: paho gives no event for it here, and the bench may sleep

    def _on_message(self, client: Any, userdata: Any, message: Any) -> None:
        now = time.time()
        with self.lock:
            self.got.append((now, bytes(message.payload)))

    def count(self) -> int:
        with self.lock:
            return len(self.got)

    def reset(self) -> None:
        with self.lock:
            self.got = []

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def _bridge_throughput(bus: FakeBus, rx: Receiver, n: int) -> float:
    rx.reset()
    start = time.time()
    for i in range(n):
        bus.event("caption", "bench", text=TEXT, previous=None, bench_t=time.time())
    wait_until(lambda: rx.count() >= n, 120, "%d events at the subscriber" % n, step=0.01)
    return n / (rx.got[n - 1][0] - start)


def _bridge_latency(bus: FakeBus, rx: Receiver, rate: float, seconds: float) -> List[float]:
    rx.reset()
    total = int(rate * seconds)
    start = time.monotonic()
    for i in range(total):
        delay = start + i / rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        bus.event("caption", "bench", text=TEXT, previous=None, bench_t=time.time())
    wait_until(lambda: rx.count() >= total, 60, "the latency run's events", step=0.01)
    return [(t - json.loads(p)["bench_t"]) * 1000.0 for t, p in rx.got[:total]]


def _direct(port: int, rx: Receiver, n: int, rate: float, seconds: float) -> Dict[str, Any]:
    """Baseline: paho publisher -> broker -> subscriber, same payloads, no bus and no bridge."""
    pub = make_client("bench-direct")
    pub.max_inflight_messages_set(100)
    pub.connect("127.0.0.1", port, 30)
    pub.loop_start()
    body = lambda: json.dumps({"type": "caption", "stream": "bench", "text": TEXT, "bench_t": time.time()})  # noqa: E731
    rx.reset()
    start = time.time()
    for _ in range(n):
        pub.publish(TOPIC, body(), qos=1)
    wait_until(lambda: rx.count() >= n, 120, "direct events", step=0.01)
    throughput = n / (rx.got[n - 1][0] - start)
    rx.reset()
    total = int(rate * seconds)
    t0 = time.monotonic()
    for i in range(total):
        delay = t0 + i / rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        pub.publish(TOPIC, body(), qos=1)
    wait_until(lambda: rx.count() >= total, 60, "direct latency events", step=0.01)
    latencies = [(t - json.loads(p)["bench_t"]) * 1000.0 for t, p in rx.got[:total]]
    pub.disconnect()
    pub.loop_stop()
    return {"events_per_s": throughput, "latency_ms": _summary(latencies)}


def machine_info() -> Dict[str, Any]:
    import platform

    import paho.mqtt
    import zmq

    return {"python": platform.python_version(), "cpus": os.cpu_count(), "machine": platform.machine(),
            "paho_mqtt": getattr(paho.mqtt, "__version__", "?"), "pyzmq": zmq.__version__,
            "loadavg": list(os.getloadavg())}


def _summary(values: List[float]) -> Dict[str, Any]:
    return {"n": len(values), "p50": percentile(values, 50), "p95": percentile(values, 95),
            "p99": percentile(values, 99), "max": max(values) if values else None}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", required=True, help="write the results here")
    parser.add_argument("--events", type=int, default=20000)
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-bridge-"))
    # Mosquitto drops QoS 1 messages beyond 1000 queued for one subscriber by default: lift it, so a
    # burst measures the bridge and not that limit.
    broker = Mosquitto(work / "broker", extra=["max_queued_messages 0", "max_queued_bytes 0"]).start()
    rx = Receiver(broker.port, TOPIC)
    endpoint = free_endpoint()
    bus = FakeBus(endpoint)
    config = {"name": "bench", "sources": [{"connect": endpoint}], "stats_every_s": 3600,
              "mqtt": {"url": "mqtt://127.0.0.1:%d" % broker.port, "qos": 1, "queue_size": args.events + 10,
                       "home_assistant": {"enabled": False}}}
    try:
        direct = _direct(broker.port, rx, args.events, args.rate, args.seconds)
        with BridgeProcess(config, work) as bridge:
            bus.wait_subscriber()
            bus.event("caption", "bench", text="warm-up", previous=None, bench_t=time.time())
            wait_until(lambda: rx.count() >= 1, 30, "the warm-up event")
            throughput = _bridge_throughput(bus, rx, args.events)
            latencies = _bridge_latency(bus, rx, args.rate, args.seconds)
            assert bridge.terminate(timeout=15) == 0
    finally:
        rx.close()
        bus.close()
        broker.stop()
    result = {
        "command": " ".join([os.path.basename(sys.executable), "bench/bridge.py"] + sys.argv[1:]),
        "machine": machine_info(),
        "bridge": {"events_per_s": throughput, "latency_ms": _summary(latencies)},
        "direct_baseline": direct,
        "ratio_throughput_vs_direct": throughput / direct["events_per_s"],
        "targets": {"events_per_s": 2000, "p95_latency_ms_at_200_per_s": 50},
        "settings": {"events": args.events, "rate": args.rate, "seconds": args.seconds, "qos": 1},
    }
    Path(args.json).write_text(json.dumps(result, indent=2))
    lat = result["bridge"]["latency_ms"]
    print("bridge: %.0f events/s (direct paho %.0f/s, ratio %.2f); latency at %.0f/s p50 %.1f p95 %.1f p99 %.1f ms "
          "(direct p95 %.1f ms)" % (throughput, direct["events_per_s"], result["ratio_throughput_vs_direct"],
                                    args.rate, lat["p50"], lat["p95"], lat["p99"], direct["latency_ms"]["p95"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
