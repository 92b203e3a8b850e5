"""Long run of the real daemon (`blipd run` in a subprocess): does memory, fds or threads creep, does
the event rate hold? Not for CI.

Every `--every` seconds: RSS, open fds and threads of the daemon (from /proc/PID), events/s seen by a
ZeroMQ subscriber, inferred frames/s from the daemon's own stats events, the load average. At the end
SIGTERM (the stop time and exit code are recorded), then JSON with the RSS slope in MB/hour (linear
fit over the samples after warm-up), max fds/threads, events/s over time, lost events (seq gaps), and
a PNG plot (matplotlib: `pip install -e '.[bench]'`).

Usage: python bench/soak.py --minutes N --json OUT [--png OUT.png] [--config FILE]
Without --config a config is generated: three looping clips (two moving, one static) on the demo
package (models/demo) when it exists, else tests/models.py's tiny package (`--tiny` forces it).
"""
import argparse
import json
import logging
import os
import shutil
import sys
import threading
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import common  # noqa: E402

log = logging.getLogger("bench.soak")

DEMO_PACKAGE = common.REPO / "models" / "demo"


def generated_config(work: Path, tiny: bool, package: Optional[str]) -> Tuple[Path, str, str]:
    """(config, endpoint, package description) for three looping clips with every task on."""
    if package:
        pkg, what = Path(package).resolve(), "package %s" % package
    elif not tiny and (DEMO_PACKAGE / "manifest.yaml").exists():
        pkg, what = DEMO_PACKAGE, "demo (models/demo)"
    else:
        pkg, what = common.tiny_package(work, ("caption", "match", "answer")), "tiny (tests/models.py)"
    clips = [
        common.make_clip(work / "moving-720p.mp4", 10),
        common.make_clip(work / "moving-360p.mp4", 10, size=(640, 360)),
        common.make_clip(work / "static-720p.mp4", 10, moving=False),
    ]
    streams = []
    for index, clip in enumerate(clips):
        streams.append({
            "name": "soak%d" % index, "url": str(clip), "loop": True,
            "caption": {"enabled": True, "every_s": 2},
            "prompts": [{"id": "car", "text": "a red car", "enter": 0.7, "exit": 0.5, "dwell_s": 1},
                        {"id": "person", "text": "a person", "enter": 0.7, "exit": 0.5, "dwell_s": 1}],
            "questions": [{"id": "count", "text": "how many people are there?", "every_s": 4}],
        })
    endpoint = common.free_endpoint()
    config = common.write_config(work / "soak.yaml", pkg, endpoint, streams,
                                 {"sample_every_s": 0.5}, log_level="info")
    return config, endpoint, what


def endpoint_of(config: Path) -> str:
    """Where to connect for the config's `publish.bind` (a wildcard host becomes 127.0.0.1)."""
    from daemon.config.config import load_config

    bind = load_config(str(config)).publish.bind
    transport, _, address = bind.partition("://")
    if transport == "inproc":
        raise SystemExit("soak: publish.bind %s cannot be reached from another process" % bind)
    if transport == "tcp":
        host, _, port = address.rpartition(":")
        if port == "*":
            raise SystemExit("soak: publish.bind %s has no fixed port to connect to" % bind)
        if host in ("*", "0.0.0.0", "[::]", "::"):
            return "tcp://127.0.0.1:%s" % port
    return bind


def sample_loop(daemon: common.DaemonProcess, sub: common.Subscriber, seconds: float,
                every: float) -> List[Dict[str, Any]]:
    """One sample per `every` s until `seconds` have passed or the daemon exits."""
    samples: List[Dict[str, Any]] = []
    pause = threading.Event()
    started = time.monotonic()
    last_t, last_total = started, 0
    while time.monotonic() - started < seconds and daemon.alive():
        pause.wait(every)
        now = time.monotonic()
        counts, _ = sub.snapshot_counts()
        total = sum(counts.values())
        proc = common.proc_sample(daemon.pid)
        if not proc:
            break
        fps_out = sub.stats_sum("fps_out")
        samples.append(dict(proc, t_s=round(now - started, 2), events_per_s=(total - last_total) / (now - last_t),
                            inferred_per_s=fps_out, load1=os.getloadavg()[0]))
        last_t, last_total = now, total
    return samples


def analyse(samples: List[Dict[str, Any]], warmup_s: float) -> Dict[str, Any]:
    import numpy as np

    steady = [s for s in samples if s["t_s"] >= warmup_s]
    slope = None
    if len(steady) >= 3:
        t = np.array([s["t_s"] for s in steady]) / 3600.0
        slope = float(np.polyfit(t - t[0], np.array([s["rss_mb"] for s in steady]), 1)[0])
    rates = [s["events_per_s"] for s in steady]
    return {
        "warmup_s": warmup_s,
        "rss_slope_mb_per_hour": slope,
        "rss_mb_first_after_warmup": steady[0]["rss_mb"] if steady else None,
        "rss_mb_last": samples[-1]["rss_mb"] if samples else None,
        "max_fds": max((s["fds"] for s in samples), default=None),
        "max_threads": max((s["threads"] for s in samples), default=None),
        "events_per_s": common.spread(rates),
        "inferred_per_s": common.spread([s["inferred_per_s"] for s in steady]),
    }


def plot(samples: List[Dict[str, Any]], path: str) -> str:
    """Write the PNG; returns what happened (matplotlib is optional)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "PNG skipped: matplotlib is not installed"
    minutes = [s["t_s"] / 60.0 for s in samples]
    fig, axes = plt.subplots(3, 1, sharex=True, figsize=(9, 8))
    axes[0].plot(minutes, [s["rss_mb"] for s in samples])
    axes[0].set_ylabel("RSS MB")
    axes[1].plot(minutes, [s["fds"] for s in samples], label="fds")
    axes[1].plot(minutes, [s["threads"] for s in samples], label="threads")
    axes[1].legend()
    axes[2].plot(minutes, [s["events_per_s"] for s in samples], label="events/s")
    axes[2].plot(minutes, [s["inferred_per_s"] for s in samples], label="inferred/s")
    axes[2].legend()
    axes[2].set_xlabel("minutes")
    fig.tight_layout()
    fig.savefig(path)
    return "PNG written to %s" % path


def parse_args(argv: Optional[List[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, required=True, help="how long to run the daemon")
    parser.add_argument("--json", metavar="OUT", required=True)
    parser.add_argument("--png", metavar="OUT.png", help="plot RSS, fds/threads and rates (needs the bench extra: matplotlib)")
    parser.add_argument("--config", metavar="FILE", help="run this config instead of a generated one")
    parser.add_argument("--tiny", action="store_true", help="generated config: the tiny package even if models/demo exists")
    parser.add_argument("--package", metavar="DIR", help="generated config: this model package")
    parser.add_argument("--every", type=float, default=5.0, help="seconds between samples (default 5)")
    parser.add_argument("--warmup", type=float, help="seconds left out of the RSS fit (default: a quarter of the run, at most 300)")
    parser.add_argument("--keep", metavar="DIR", help="work in DIR and keep it (config, clips, daemon log)")
    return parser.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    seconds = args.minutes * 60.0
    warmup = args.warmup if args.warmup is not None else min(300.0, seconds / 4.0)
    work = common.temp_dir("blip-soak-", args.keep)
    try:
        if args.config:
            config, endpoint, what = Path(args.config).resolve(), endpoint_of(Path(args.config)), "from the config"
        else:
            config, endpoint, what = generated_config(work, args.tiny, args.package)
        daemon = common.DaemonProcess(config, counters=False)
        daemon.log_path = work / "daemon.log"
        load_start = list(os.getloadavg())
        with common.Subscriber(endpoint, keep_frames=False) as sub:
            daemon.start()
            log.info("daemon pid %d on %s; sampling every %.0f s for %.1f min", daemon.pid, config, args.every, args.minutes)
            try:
                samples = sample_loop(daemon, sub, seconds, args.every)
            finally:
                died = not daemon.alive()
                daemon.stop(timeout=20.0)
            counts, _ = sub.snapshot_counts()
            gaps = sub.seq_gaps
        tail = daemon.log_tail(10)
    finally:
        if not args.keep:
            shutil.rmtree(str(work), ignore_errors=True)
    doc: Dict[str, Any] = analyse(samples, warmup)
    doc.update(minutes=args.minutes, every_s=args.every, config=str(config), model=what,
               exited_early=died, exit_code=daemon.exit_code, stop_s=daemon.stop_s, events=counts,
               seq_gaps=gaps, load_start=load_start, load_end=list(os.getloadavg()),
               machine=common.machine_info(), samples=samples)
    if died:
        doc["log_tail"] = tail
    doc["png"] = plot(samples, args.png) if args.png else "no --png given"
    print_summary(doc)
    Path(args.json).write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    return 0 if not died and daemon.exit_code == 0 else 1


def print_summary(doc: Dict[str, Any]) -> None:
    ev, inf = doc["events_per_s"], doc["inferred_per_s"]
    print("soak: %.1f min, model %s, %d samples; %s" % (doc["minutes"], doc["model"], len(doc["samples"]),
                                                        common.load_note()))
    print("RSS %s MB after warm-up (%.0f s) -> %s MB; slope %s MB/hour" % (
        _f(doc["rss_mb_first_after_warmup"]), doc["warmup_s"], _f(doc["rss_mb_last"]),
        _f(doc["rss_slope_mb_per_hour"])))
    print("max fds %s, max threads %s; events/s median %s (min %s, max %s); inferred/s median %s; seq gaps %d" % (
        _f(doc["max_fds"], "%.0f"), _f(doc["max_threads"], "%.0f"), _f(ev["median"]), _f(ev["min"]), _f(ev["max"]),
        _f(inf["median"]), doc["seq_gaps"]))
    print("stop: SIGTERM -> exit %s in %s s%s; %s" % (
        doc["exit_code"], _f(doc["stop_s"]), " (the daemon exited early!)" if doc["exited_early"] else "",
        doc["png"]))


def _f(value: Any, pattern: str = "%.2f") -> str:
    return "-" if value is None else pattern % value


if __name__ == "__main__":
    sys.exit(main())
