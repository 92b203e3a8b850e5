"""What `blipd console` sustains, measured against its targets on this machine.

  recorder_events_per_s   events/s a real console subprocess records from a ZeroMQ PUB publishing as
                          fast as it can (N events, first send -> all committed), snapshots off and
                          on (a ~15 kB JPEG on every event: the worst case), while a client loads the
                          page, polls /api/streams and /api/timeline and holds /api/live open.
                          Target >= 2000 events/s without snapshots.
  search_p95_ms           p95 over HTTP of /api/search (common and rare words, prefixes, stream /
                          type / period filters) on a database of --events recorded events (1,000,000
                          by default, written through the recorder's Store, spread over 30 days).
                          Target <= 100 ms at 1 M.
  rss_mb                  the console process's RSS after the load and the searches. Target < 300 MB.

Usage: python bench/console.py --json OUT [--events 1000000] [--ingest 30000]
Nothing is asserted: figures are printed beside their targets and written to OUT.
"""
import argparse
import datetime
import http.client
import json
import os
import random
import statistics
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any, Dict, List

import zmq

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from daemon.console.store import Incoming, Store  # noqa: E402
from tests.console.proc import ConsoleProcess, free_port  # noqa: E402

COLORS = ["red", "blue", "green", "yellow", "white", "black", "orange", "purple"]
SHAPES = ["circle", "square", "star", "triangle", "truck", "person", "car", "dog"]
PLACES = ["on the left", "in the middle", "on the right", "near the gate", "in the yard"]
QUESTIONS = [("count", "how many shapes are there?", ["one", "two", "three", "none"]),
             ("gate", "is the gate open?", ["yes", "no"])]
STREAMS = ["gate", "yard", "garage", "street", "door", "drive", "shed", "roof"]
TARGETS = {"events_per_s": 2000.0, "search_p95_ms": 100.0, "rss_mb": 300.0}


def iso(t: float) -> str:
    return datetime.datetime.fromtimestamp(t, datetime.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Events:
    """A plausible mix: 60 % captions, 12 % matches, 12 % answers, 12 % stats, the rest stream states."""

    def __init__(self, seed: int = 1) -> None:
        self.rand = random.Random(seed)
        self.seq: Dict[str, int] = {}

    def make(self, t: float, boot: str = "bench") -> Dict[str, Any]:
        r = self.rand
        stream = r.choice(STREAMS)
        self.seq[stream] = self.seq.get(stream, 0) + 1
        e: Dict[str, Any] = {"schema": 1, "stream": stream, "seq": self.seq[stream], "boot": boot, "time": iso(t),
                             "pts_s": None, "frame": None, "latency_ms": 12.5, "model": "demo"}
        roll = r.random()
        if roll < 0.60:
            words = ["a %s %s %s" % (r.choice(COLORS), r.choice(SHAPES), r.choice(PLACES)) for _ in range(r.randint(1, 3))]
            e.update(type="caption", text=" and ".join(words), previous=None)
        elif roll < 0.72:
            shape = r.choice(SHAPES)
            e.update(type="match", prompt=shape, text="a %s %s" % (r.choice(COLORS), shape),
                     phase=r.choice(["start", "update", "update", "end"]), score=0.8, raw_score=0.8, peak=0.9,
                     started=iso(t - 3), duration_s=3.0)
        elif roll < 0.84:
            qid, text, answers = r.choice(QUESTIONS)
            e.update(type="answer", question=qid, text=text, answer=r.choice(answers), previous=None)
        elif roll < 0.96:
            e.update(type="stats", interval_s=10.0, decoded=1000, sampled=100, inferred=90, failed=0, published=100,
                     publish_dropped=0, subscriber_overflows=0, fps_in=25.0, fps_out=2.0, queue_depth=0,
                     dropped={"replaced": 1, "too_old": 0, "unchanged": 9}, latency=None)
        else:
            e.update(type="stream", state=r.choice(["online", "reconnecting"]), reason=None, attempt=0, retry_in_s=None)
        return e


def fill(data_dir: Path, count: int) -> float:
    """Write `count` events spread over the last 30 days through the recorder's Store; seconds taken."""
    store = Store(data_dir, snapshots=False, max_age_days=3650, max_total_mb=1e6)
    events = Events(seed=7)
    start, span = time.time() - 30 * 86400, 30 * 86400.0
    began = time.monotonic()
    batch: List[Incoming] = []
    for i in range(count):
        t = start + span * i / count
        batch.append(Incoming(events.make(t), None, t))
        if len(batch) == 5000:
            store.write(batch)
            batch = []
            if (i + 1) % 200000 == 0:
                print("  filled %d events (%.0f s)" % (i + 1, time.monotonic() - began), flush=True)
    if batch:
        store.write(batch)
    store.close()
    return time.monotonic() - began


def jpeg() -> bytes:
    import cv2
    import numpy as np

    capture = cv2.VideoCapture(str(Path(__file__).resolve().parent.parent / "samples" / "demo.mp4"))
    ok, frame = capture.read()
    capture.release()
    if not ok:
        frame = (np.random.default_rng(1).random((360, 640, 3)) * 255).astype("uint8")
    frame = cv2.resize(frame, (320, 180))
    return cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, 80])[1].tobytes()


def rss_mb(pid: int) -> float:
    for line in Path("/proc/%d/status" % pid).read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    return float("nan")


class PageClient(threading.Thread):
    """A browser's worth of load: the page, its polls, and an open /api/live stream."""

    def __init__(self, base: str) -> None:
        super().__init__(daemon=True)
        self.base, self.stop, self.requests, self.live_bytes = base, threading.Event(), 0, 0

    def run(self) -> None:
        live = threading.Thread(target=self._live, daemon=True)
        live.start()
        while not self.stop.is_set():
            for path in ("/", "/static/app.js", "/api/streams", "/api/timeline?stream=gate&period=15m", "/api/status"):
                try:
                    with urllib.request.urlopen(self.base + path, timeout=30) as response:
                        response.read()
                    self.requests += 1
                except OSError:
                    pass
            self.stop.wait(0.5)

    def _live(self) -> None:
        try:
            with urllib.request.urlopen(self.base + "/api/live", timeout=60) as response:
                while not self.stop.is_set():
                    chunk = response.read1(65536)
                    if not chunk:
                        return
                    self.live_bytes += len(chunk)
        except (OSError, http.client.HTTPException):
            return  # the console stopped at the end of the run


def ingest(count: int, snapshot: bytes, tmp: Path) -> Dict[str, Any]:
    """Publish `count` events as fast as possible into a console subprocess; events/s it recorded."""
    context = zmq.Context()
    pub = context.socket(zmq.PUB)
    pub.setsockopt(zmq.SNDHWM, 0)  # keep everything queued: the console's RCVHWM is what bounds it
    port = pub.bind_to_random_port("tcp://127.0.0.1")
    http = free_port()
    console = ConsoleProcess(["--sub", "tcp://127.0.0.1:%d" % port, "--listen", "127.0.0.1:%d" % http,
                              "--data", str(tmp)], http).start()
    page = PageClient(console.base)
    try:
        probe = Events(seed=3)
        deadline = time.monotonic() + 30  # slow joiner: publish probes until the console records one
        while console.json("/api/status")["recorded"] == 0 and time.monotonic() < deadline:
            pub.send_multipart([b"caption/probe", json.dumps(dict(probe.make(time.time(), "probe"), stream="probe")).encode()])
            time.sleep(0.05)
        base = console.json("/api/status")["recorded"]
        page.start()
        events = Events(seed=11)
        messages = []
        for _ in range(count):
            e = events.make(time.time())
            parts = [("%s/%s" % (e["type"], e["stream"])).encode(), json.dumps(e).encode()]
            messages.append(parts + [snapshot] if snapshot else parts)
        began = time.monotonic()
        for parts in messages:
            pub.send_multipart(parts)
        sent_s = time.monotonic() - began
        status = console.json("/api/status")
        while status["recorded"] - base < count and time.monotonic() - began < 600:
            time.sleep(0.05)
            status = console.json("/api/status")
            if status["recorded"] - base + status["missed"] >= count:
                break
        took = time.monotonic() - began
        recorded = status["recorded"] - base
        page.stop.set()
        return {"events": count, "recorded": recorded, "missed": status["missed"], "seconds": round(took, 2),
                "publish_seconds": round(sent_s, 2), "events_per_s": round(recorded / took, 1),
                "snapshots_written": status["snapshots_written"], "page_requests": page.requests,
                "live_bytes": page.live_bytes, "rss_mb": round(rss_mb(console.proc.pid), 1)}
    finally:
        page.stop.set()
        console.stop()
        pub.close(0)
        context.term()


def search_latency(data_dir: Path, queries: int) -> Dict[str, Any]:
    http = free_port()
    console = ConsoleProcess(["--sub", "tcp://127.0.0.1:%d" % free_port(), "--listen", "127.0.0.1:%d" % http,
                              "--data", str(data_dir)], http).start()
    rand = random.Random(5)
    kinds = [lambda: rand.choice(SHAPES), lambda: "%s %s" % (rand.choice(COLORS), rand.choice(SHAPES)),
             lambda: rand.choice(SHAPES)[:3], lambda: "gate open yes", lambda: "%s %s near gate" % (rand.choice(COLORS), rand.choice(SHAPES))]
    filters = ["", "&stream=%s" % rand.choice(STREAMS), "&type=caption", "&period=24h", "&type=answer&period=7d"]
    try:
        times, found = [], 0
        for i in range(queries):
            path = "/api/search?q=%s%s" % (urllib.parse.quote(kinds[i % len(kinds)]()), filters[(i // 5) % len(filters)])
            began = time.perf_counter()
            answer = console.json(path)
            times.append((time.perf_counter() - began) * 1000)
            found += len(answer["events"])
        pages = []
        for _ in range(50):
            began = time.perf_counter()
            console.json("/api/events?stream=gate&type=caption&period=7d&limit=100")
            pages.append((time.perf_counter() - began) * 1000)
        ordered = sorted(times)
        return {"queries": queries, "p50_ms": round(statistics.median(ordered), 1),
                "p95_ms": round(ordered[int(0.95 * len(ordered)) - 1], 1), "max_ms": round(ordered[-1], 1),
                "results_per_query": round(found / queries, 1),
                "events_page_p95_ms": round(sorted(pages)[int(0.95 * len(pages)) - 1], 1),
                "rss_mb": round(rss_mb(console.proc.pid), 1)}
    finally:
        console.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", required=True, help="write the figures here")
    parser.add_argument("--events", type=int, default=1000000, help="recorded events to search (default 1,000,000)")
    parser.add_argument("--ingest", type=int, default=30000, help="events published per ingest run")
    parser.add_argument("--queries", type=int, default=300)
    args = parser.parse_args()
    out: Dict[str, Any] = {"machine": {"cpus": os.cpu_count()}}
    with tempfile.TemporaryDirectory(prefix="bench-console-") as tmp:
        root = Path(tmp)
        print("recorder, snapshots off: %d events" % args.ingest, flush=True)
        out["recorder_snapshots_off"] = ingest(args.ingest, b"", root / "off")
        print("  %s" % out["recorder_snapshots_off"], flush=True)
        picture = jpeg()
        print("recorder, snapshots on (%d-byte JPEG on every event): %d events" % (len(picture), args.ingest // 3), flush=True)
        out["recorder_snapshots_on"] = ingest(args.ingest // 3, picture, root / "on")
        out["recorder_snapshots_on"]["jpeg_bytes"] = len(picture)
        print("  %s" % out["recorder_snapshots_on"], flush=True)
        print("filling a database with %d events" % args.events, flush=True)
        fill_s = fill(root / "big", args.events)
        db_mb = (root / "big" / "console.db").stat().st_size / 1048576.0
        out["fill"] = {"events": args.events, "seconds": round(fill_s, 1), "events_per_s": round(args.events / fill_s),
                       "database_mb": round(db_mb, 1)}
        print("  %s" % out["fill"], flush=True)
        out["search"] = search_latency(root / "big", args.queries)
        out["search"]["events"] = args.events
        print("  search: %s" % out["search"], flush=True)
    rss = max(out["recorder_snapshots_off"]["rss_mb"], out["recorder_snapshots_on"]["rss_mb"], out["search"]["rss_mb"])
    out["summary"] = {
        "events_per_s_snapshots_off": out["recorder_snapshots_off"]["events_per_s"],
        "events_per_s_snapshots_on": out["recorder_snapshots_on"]["events_per_s"],
        "search_p95_ms": out["search"]["p95_ms"], "rss_mb": rss, "targets": TARGETS,
        "events_per_s_over_target": round(out["recorder_snapshots_off"]["events_per_s"] / TARGETS["events_per_s"], 2),
        "search_p95_over_target": round(out["search"]["p95_ms"] / TARGETS["search_p95_ms"], 2),
        "rss_over_target": round(rss / TARGETS["rss_mb"], 2),
    }
    print(json.dumps(out["summary"], indent=2))
    Path(args.json).write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
