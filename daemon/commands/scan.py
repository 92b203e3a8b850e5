"""`blipd scan FILE... -c CONFIG [--stream NAME] --json OUT [--csv OUT]`: one stream's tasks over
recorded files at full speed, through the daemon's own pipeline (daemon/tuning/scan.py); writes
the per-sample timeline and the events as the daemon would publish them. Exit 0, or 2 with one
line (bad config or arguments, a file that cannot be read as video)."""
import argparse
import logging
import os
import sys
import time
from typing import Any, Optional, TextIO

HELP = "run a stream's tasks over recorded files at full speed; write a timeline and the events (for tune)"
BAR_WIDTH = 30
PLAIN_STEPS = 10
"""Without a terminal, one progress line per this fraction of a file (a tenth)."""


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("files", nargs="+", metavar="FILE", help="video files (the stream's URL is ignored)")
    parser.add_argument("-c", "--config", required=True)
    parser.add_argument("--stream", default=None, help="the stream whose tasks run (default: the only one)")
    parser.add_argument("--json", required=True, metavar="OUT", help="timeline and events (input of `blipd tune`)")
    parser.add_argument("--csv", default=None, metavar="OUT", help="also the per-sample table")


class Progress:
    """A bar redrawn in place on a terminal; a plain line every 10 % otherwise. The file's length
    is read from its header at the first report of progress, once the scan has read it (a file that is not
    video fails before, with the scan's own one-line error and no second decoder's complaints)."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.tty = bool(getattr(out, "isatty", lambda: False)())
        self._started = time.monotonic()
        self._file: Optional[str] = None
        self._length: Optional[float] = None
        self._printed = -1

    def begin(self, path: str) -> None:
        """A file starts (its speed is measured from now)."""
        self._file, self._started, self._printed = path, time.monotonic(), -1
        self._length = None

    def __call__(self, path: str, done_s: float, duration_s: Optional[float]) -> None:
        if path != self._file:
            self.begin(path)
        if done_s <= 0:
            return
        if self._length is None:
            self._length = _duration(path) or 0.0
        duration_s = duration_s or self._length or None
        elapsed = max(1e-6, time.monotonic() - self._started)
        share = min(1.0, done_s / duration_s) if duration_s else None
        speed = "%.1fx" % (done_s / elapsed)
        if self.tty:
            if share is None:
                self.out.write("\r%s %7.1f s  %s " % (path, done_s, speed))
            else:
                filled = int(round(share * BAR_WIDTH))
                self.out.write("\r%s [%s%s] %3d%% %7.1f s  %s " % (path, "#" * filled, "." * (BAR_WIDTH - filled),
                                                                   int(share * 100), done_s, speed))
        elif share is not None and int(share * PLAIN_STEPS + 1e-9) > self._printed:
            self.out.write("scan: %s %3d%% %.1f/%.1f s (%s)\n" % (path, int(share * 100), done_s, duration_s, speed))
            self._printed = int(share * PLAIN_STEPS + 1e-9)
        self.out.flush()

    def finish(self) -> None:
        if self.tty:
            self.out.write("\n")
            self.out.flush()


def _duration(path: str) -> Optional[float]:
    """The file's length from its header, for the progress bar only (None when it does not say)."""
    try:
        import cv2

        cap = cv2.VideoCapture(path)
        try:
            frames, fps = cap.get(cv2.CAP_PROP_FRAME_COUNT), cap.get(cv2.CAP_PROP_FPS)
        finally:
            cap.release()
        return frames / fps if frames > 0 and 0 < fps < 1000 else None
    except Exception:  # no duration: the progress shows seconds only
        return None


def _summary(scan: Any) -> str:
    counters = scan.counters
    dropped = counters.get("dropped", {})
    gated = dropped.get("unchanged", 0)
    return ("%s: %.1f s of video in %.2f s (%.1fx real time; inference %.2f s); %d sample points, %d inferred, "
            "%d unchanged, %d failed; %d events" % (scan.file, scan.duration_s, scan.elapsed_s, scan.speed,
                                                    scan.inference_s, len(scan.samples), counters.get("inferred", 0),
                                                    gated, counters.get("failed", 0), len(scan.events)))


def run(args: argparse.Namespace) -> int:
    from daemon.config.config import load_config
    from daemon.errors import DaemonError
    from daemon.tuning import timeline
    from daemon.tuning.scan import make_scanner, pick_stream

    if args.log_level is None:  # the scan says why a file failed itself, in one line
        logging.getLogger("daemon.pipeline").setLevel(logging.ERROR)
    settings = load_config(args.config)
    stream = pick_stream(settings, args.stream)
    for out in filter(None, (args.json, args.csv)):
        folder = os.path.dirname(os.path.abspath(out))
        if not os.path.isdir(folder) or not os.access(folder, os.W_OK):
            sys.stderr.write("blipd: cannot write %s: no such folder or not writable\n" % out)
            return 2
    progress = Progress(sys.stderr)
    results = []
    with make_scanner(settings, stream) as scanner:
        for path in args.files:
            try:
                result = scanner.scan(path, progress)
            except DaemonError as exc:
                progress.finish()
                sys.stderr.write("blipd: %s\n" % str(exc).splitlines()[0])
                return 2
            progress.finish()
            sys.stdout.write(_summary(result) + "\n")
            results.append(result)
    doc = timeline.document(settings, stream, scanner.package.name, results)
    timeline.write_json(args.json, doc)
    if args.csv:
        timeline.write_csv(args.csv, doc)
    return 0
