"""Helpers shared by the daemon benchmarks (pipeline.py, soak.py): media, packages, configs, a daemon
subprocess, a subscriber that timestamps what it receives, and /proc sampling.

The daemon always runs in its own process so its RSS, fds and threads are its own and the latency a
subscriber sees includes the ZeroMQ hop. `python -m bench.common serve CONFIG COUNTERS_JSON` is the
daemon (`Service.run()`, exactly what `blipd run` does) plus a dump of every stream's counters after
the clean stop, because the final `stats` event cannot be relied on to carry them.
"""
import datetime
import json
import logging
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

log = logging.getLogger("bench.common")

FFMPEG = shutil.which("ffmpeg") or "/usr/bin/ffmpeg"
BASE_SEEDS = {"caption": 0, "match": 1, "answer": 2}
"""torch seeds of bench/blip_tasks.py's checkpoints, so both benchmarks build the same weights."""


# -- media ----------------------------------------------------------------------------------------
def make_clip(path: Path, seconds: float, moving: bool = True, size: Tuple[int, int] = (1280, 720),
              fps: int = 25) -> Path:
    """An H.264 clip like a camera's: main profile, GOP 2 s, no B-frames.

    moving: testsrc2 scrolling diagonally (every sampled frame differs, like a panning camera);
    else one still frame of it with temporal sensor-like noise (the scene gate must skip it).
    """
    src = "testsrc2=size=%dx%d:rate=%d:duration=%s" % (size[0], size[1], fps, seconds)
    if moving:
        vf = "scroll=horizontal=0.002:vertical=0.001"
    else:
        vf = "trim=end_frame=1,tpad=stop=-1:stop_mode=clone,noise=alls=6:allf=t"
    cmd = [FFMPEG, "-hide_banner", "-loglevel", "error", "-nostdin", "-y", "-f", "lavfi", "-i", src,
           "-vf", vf, "-t", str(seconds), "-c:v", "libx264", "-preset", "veryfast", "-profile:v", "main",
           "-g", str(2 * fps), "-bf", "0", "-pix_fmt", "yuv420p", "-an", str(path)]
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=600)
    if proc.returncode != 0:
        raise RuntimeError("ffmpeg failed for %s: %s" % (path, proc.stderr.decode(errors="replace")[-500:]))
    return Path(path)


def decode_frames(path: Path, count: int) -> List[Any]:
    """`count` BGR frames spread over the clip (the bare model loop's pre-decoded input)."""
    import cv2

    cap = cv2.VideoCapture(str(path))
    total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) or count
    step = max(1, total // count)
    frames = []
    index = 0
    while len(frames) < count:
        ok, image = cap.read()
        if not ok:
            break
        if index % step == 0:
            frames.append(image)
        index += 1
    cap.release()
    if not frames:
        raise RuntimeError("no frame decoded from %s" % path)
    return frames


# -- model packages -------------------------------------------------------------------------------
def base_checkpoints(work: Path, tasks: Sequence[str]) -> Dict[str, Path]:
    """BLIP-base-sized random checkpoints (transformers' default configs) of `tasks` only:
    {task: folder}. Same configs, tokenizer and seeds as bench/blip_tasks.py's."""
    import torch
    import transformers

    from bench.blip_tasks import bert_like_tokenizer
    from tests.models import TASK_CLASSES

    tokenizer = bert_like_tokenizer()
    config = transformers.BlipConfig(
        text_config={"sep_token_id": 102, "eos_token_id": 102}, vision_config={"initializer_range": 0.02}
    )
    folders = {}
    for task in tasks:
        torch.manual_seed(BASE_SEEDS[task])
        model = getattr(transformers, TASK_CLASSES[task])(config).eval()
        folders[task] = work / ("hf-" + task)
        model.save_pretrained(str(folders[task]))
        tokenizer.save_pretrained(str(folders[task]))
        del model
    return folders


def base_package(work: Path, tasks: Sequence[str]) -> Path:
    """`base_checkpoints` exported without verification (bench/blip_tasks.py verifies the same export
    path; speed does not depend on the weights); the checkpoints are deleted afterwards."""
    from blip.export.api import export_package

    folders = base_checkpoints(work, tasks)
    out = export_package(work / "package", name="blip-base-random", verify=False,
                         command="bench (BLIP-base random weights)", **folders)
    for folder in folders.values():
        shutil.rmtree(str(folder), ignore_errors=True)
    return out


def tiny_package(work: Path, tasks: Sequence[str]) -> Path:
    """tests/models.py's tiny package: a fast smoke run that measures Python overhead, not the model."""
    from tests.models import make_tiny_package

    return make_tiny_package(work / "package", tasks=tuple(tasks))


# -- configs --------------------------------------------------------------------------------------
def free_endpoint() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return "tcp://127.0.0.1:%d" % sock.getsockname()[1]


def per_frame_prompts(texts: Sequence[str]) -> List[Dict[str, Any]]:
    """Prompts tuned so every inferred frame publishes one match event per prompt: enter at a
    score no model goes below, exit never reached, no dwell or smoothing (with update_every_s tiny)."""
    return [{"id": "p%d" % i, "text": text, "enter": 1e-9, "exit": 0.0, "dwell_s": 0, "smoothing": 1.0}
            for i, text in enumerate(texts)]


def stream_entry(name: str, url: Path, prompts: Sequence[str], tasks: Sequence[str], loop: bool,
                 **overrides: Any) -> Dict[str, Any]:
    """A stream that runs `tasks` on every frame it hands to the worker."""
    entry: Dict[str, Any] = {
        "name": name, "url": str(url), "loop": loop, "update_every_s": 0.001,
        "caption": {"enabled": "caption" in tasks, "every_s": 0.001},
        "prompts": per_frame_prompts(prompts),
    }
    if "answer" in tasks:
        entry["questions"] = [{"id": "q0", "text": "what color is the car?", "every_s": 0.001}]
    entry.update(overrides)
    return entry


def write_config(path: Path, package: Path, endpoint: str, streams: List[Dict[str, Any]],
                 defaults: Optional[Dict[str, Any]] = None, log_level: str = "warning") -> Path:
    import yaml

    doc = {
        "model": {"package": str(package), "backend": "onnxruntime"},
        "publish": {"bind": endpoint, "stats_every_s": 1, "queue_size": 10000},
        "metrics": {"port": 0},
        "log_level": log_level,
        "defaults": dict(defaults or {}),
        "streams": streams,
    }
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return path


# -- the daemon process ---------------------------------------------------------------------------
def proc_sample(pid: int) -> Dict[str, float]:
    """RSS (MB), open fds and threads of `pid` from /proc; {} once it is gone."""
    try:
        with open("/proc/%d/status" % pid, encoding="ascii") as handle:
            fields = dict(line.split(":", 1) for line in handle if ":" in line)
        fds = len(os.listdir("/proc/%d/fd" % pid))
    except (OSError, ValueError):
        return {}
    return {
        "rss_mb": int(fields["VmRSS"].split()[0]) / 1024.0,
        "fds": float(fds),
        "threads": float(int(fields["Threads"].strip())),
    }


def proc_cpu_s(pid: int) -> Optional[float]:
    """User + system CPU seconds `pid` has used (all its threads); None once it is gone."""
    try:
        with open("/proc/%d/stat" % pid, encoding="ascii") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / float(os.sysconf("SC_CLK_TCK"))


def decode_cpu(clip: Path, streams: int, seconds: float, fps: float = 25.0) -> float:
    """Core-seconds per second that `streams` OpenCV readers grabbing `clip` at its real rate use:
    the CPU the daemon's decoding takes from the model, measured alone in this process."""
    import resource

    import cv2

    stop = threading.Event()

    def read() -> None:
        while not stop.is_set():
            cap = cv2.VideoCapture(str(clip), cv2.CAP_FFMPEG)
            started, count = time.monotonic(), 0
            while not stop.is_set() and cap.grab():
                count += 1
                stop.wait(max(0.0, started + count / fps - time.monotonic()))
            cap.release()

    threads = [threading.Thread(target=read, name="bench-decode-%d" % i, daemon=True) for i in range(streams)]
    before, started = resource.getrusage(resource.RUSAGE_SELF), time.monotonic()
    for thread in threads:
        thread.start()
    stop.wait(seconds)
    stop.set()
    for thread in threads:
        thread.join(10)
    after, elapsed = resource.getrusage(resource.RUSAGE_SELF), time.monotonic() - started
    used = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    return used / elapsed


class DaemonProcess:
    """The daemon in a subprocess, its output in a log file; `stop()` is SIGTERM and a wait.

    counters: with `counters=True` the bench runner (Service + a counters dump) is started instead
    of `blipd run`; `stop()` then returns {stream: StreamCounters.snapshot()}.
    """

    def __init__(self, config: Path, counters: bool = True) -> None:
        self.config = Path(config)
        self.log_path = self.config.with_suffix(".log")
        self.counters_path = self.config.with_suffix(".counters.json") if counters else None
        if counters:
            cmd = [sys.executable, "-m", "bench.common", "serve", str(self.config), str(self.counters_path)]
        else:
            cmd = [sys.executable, "-m", "daemon.commands.cli", "run", "-c", str(self.config)]
        self._cmd = cmd
        self.proc: Optional[subprocess.Popen] = None  # type: ignore[type-arg]
        self.exit_code: Optional[int] = None
        self.stop_s: Optional[float] = None

    def start(self) -> "DaemonProcess":
        with open(str(self.log_path), "wb") as out:
            self.proc = subprocess.Popen(self._cmd, cwd=str(REPO), stdout=out, stderr=subprocess.STDOUT,
                                         env=dict(os.environ, PYTHONUNBUFFERED="1"))
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, timeout: float = 20.0) -> Dict[str, Any]:
        """SIGTERM, wait (kill after `timeout`); the counters dump when the runner wrote one."""
        assert self.proc is not None
        started = time.monotonic()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                log.warning("daemon %d ignored SIGTERM for %.0f s; killing it", self.proc.pid, timeout)
                self.proc.kill()
                self.proc.wait(10)
        self.stop_s = time.monotonic() - started
        self.exit_code = self.proc.returncode
        if self.counters_path is not None and self.counters_path.exists():
            return dict(json.loads(self.counters_path.read_text(encoding="utf-8")))
        return {}


def unaccounted(counters: Dict[str, Any]) -> Dict[str, int]:
    """Per stream: decoded - (inferred + failed + every drop reason); daemon/counters.py promises 0."""
    out = {}
    for stream, snap in counters.items():
        total = int(snap["inferred"]) + int(snap["failed"]) + sum(int(n) for n in snap["dropped"].values())
        out[stream] = int(snap["decoded"]) - total
    return out


def accounted(counters: Dict[str, Any]) -> Dict[str, bool]:
    """Per stream: decoded == inferred + failed + sum(dropped)."""
    return {stream: missing == 0 for stream, missing in unaccounted(counters).items()}


# -- the subscriber -------------------------------------------------------------------------------
def capture_epoch(iso: str) -> float:
    """An event's `time` ('...T12:00:01.250Z') as epoch seconds."""
    moment = datetime.datetime.strptime(iso, "%Y-%m-%dT%H:%M:%S.%fZ")
    return moment.replace(tzinfo=datetime.timezone.utc).timestamp()


class Subscriber:
    """The tests' EventCollector (one SUB thread for tests and benchmarks) feeding a tally that
    keeps, for the per-frame marker prompt, (received, captured, latency_ms, stream) of every event;
    counts all events by type; keeps the latest stats per stream."""

    def __init__(self, endpoint: str, marker_prompt: str = "p0", keep_frames: bool = True) -> None:
        import zmq

        from tests.daemon_proc import EventCollector

        self.endpoint = endpoint
        self.marker = marker_prompt
        self.keep_frames = keep_frames
        self.frames: List[Tuple[float, float, float, str]] = []
        self.counts: Dict[str, int] = {}
        self.stats: Dict[str, Tuple[float, Dict[str, Any]]] = {}
        self.states: Dict[str, Tuple[float, str]] = {}
        self.frame_events = 0
        self.seq_gaps = 0
        self._last_seq: Dict[Tuple[str, str], int] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._collector = EventCollector(endpoint, socket_options={zmq.RCVHWM: 100000}, on_event=self._take,
                                         keep=False)

    def __enter__(self) -> "Subscriber":
        self._collector.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._collector.__exit__(*exc)

    def _take(self, received: float, event: Dict[str, Any]) -> None:
        with self._lock:
            kind = str(event.get("type"))
            self.counts[kind] = self.counts.get(kind, 0) + 1
            key = (str(event.get("boot")), str(event.get("stream")))
            seq = event.get("seq")
            if isinstance(seq, int):
                last = self._last_seq.get(key)
                if last is not None and seq > last + 1:
                    self.seq_gaps += seq - last - 1
                self._last_seq[key] = seq
            if kind == "stats":
                self.stats[event["stream"]] = (received, event)
            elif kind == "stream":
                self.states[event["stream"]] = (received, event["state"])
            elif kind == "match" and event.get("prompt") == self.marker:
                self.frame_events += 1
                if self.keep_frames:
                    latency = event.get("latency_ms")
                    self.frames.append((received, capture_epoch(event["time"]),
                                        float("nan") if latency is None else float(latency), event["stream"]))

    def frames_between(self, start: float, end: float) -> List[Tuple[float, float, float, str]]:
        with self._lock:
            return [f for f in self.frames if start <= f[0] < end]

    def first_frame_after(self, since: float, timeout: float, daemon: Optional[DaemonProcess] = None) -> float:
        """Wait (polling with a deadline) for a marker event received after `since`; its receive time."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                later = [f[0] for f in self.frames if f[0] >= since]
            if later:
                return min(later)
            if daemon is not None and not daemon.alive():
                raise RuntimeError("daemon exited (%s):\n%s" % (daemon.proc.returncode if daemon.proc else "?",
                                                                daemon.log_tail()))
            self._stop.wait(0.1)
        tail = daemon.log_tail() if daemon is not None else ""
        raise RuntimeError("no per-frame event within %.0f s\n%s" % (timeout, tail))

    def wait_drained(self, streams: Sequence[str], timeout: float, daemon: DaemonProcess) -> bool:
        """Wait until every stream is `ended` and a later stats event shows its slot empty."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and daemon.alive():
            with self._lock:
                done = all(
                    name in self.states and self.states[name][1] == "ended" and name in self.stats
                    and self.stats[name][0] > self.states[name][0] and self.stats[name][1]["queue_depth"] == 0
                    for name in streams)
            if done:
                return True
            self._stop.wait(0.2)
        return False

    def stats_sum(self, name: str) -> float:
        """Sum over streams of field `name` of each stream's latest stats event (e.g. fps_out)."""
        with self._lock:
            return sum(float(event.get(name) or 0.0) for _, event in self.stats.values())

    def snapshot_counts(self) -> Tuple[Dict[str, int], int]:
        with self._lock:
            return dict(self.counts), self.frame_events


# -- reporting ------------------------------------------------------------------------------------
def spread(values: Sequence[float]) -> Dict[str, Optional[float]]:
    """median/min/max (None for an empty list)."""
    if not values:
        return {"median": None, "min": None, "max": None, "n": 0}
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values)}


def percentile(values: Sequence[float], q: float) -> Optional[float]:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, int(round(q / 100.0 * (len(ordered) - 1)))))]


def machine_info() -> Dict[str, Any]:
    """blip_tasks' machine description plus opencv, pyzmq and the load average now."""
    import cv2
    import zmq

    from bench.blip_tasks import machine

    info = machine()
    info.update(opencv=str(cv2.__version__), pyzmq=str(zmq.__version__), loadavg=list(os.getloadavg()))
    return info


def load_note() -> str:
    one, five, fifteen = os.getloadavg()
    return "load average %.2f %.2f %.2f on %d cores" % (one, five, fifteen, os.cpu_count() or 0)


def temp_dir(prefix: str, keep: Optional[str]) -> Path:
    path = Path(keep) if keep else Path(tempfile.mkdtemp(prefix=prefix))
    path.mkdir(parents=True, exist_ok=True)
    return path


# -- the runner (`python -m bench.common serve CONFIG COUNTERS_JSON`) ----------------------------
def serve(config: str, counters_out: str) -> int:
    """`blipd run` (Service.run until SIGTERM), then every stream's final counters as JSON."""
    from daemon.config.config import load_config
    from daemon.ops.logsetup import setup_logging
    from daemon.service import Service

    settings = load_config(config)
    setup_logging(settings.log_level, secrets=settings.secrets())
    service = Service(settings)
    code = service.run()
    counters = {s.name: service.streams.counters_for(s.name).snapshot() for s in settings.streams}
    Path(counters_out).write_text(json.dumps(counters, indent=1) + "\n", encoding="utf-8")
    return code


if __name__ == "__main__":
    if len(sys.argv) != 4 or sys.argv[1] != "serve":
        sys.stderr.write("usage: python -m bench.common serve CONFIG COUNTERS_JSON\n")
        sys.exit(2)
    sys.exit(serve(sys.argv[2], sys.argv[3]))
