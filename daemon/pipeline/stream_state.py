"""What the workers remember about one stream between frames: due times, last texts, trackers.

A worker holds `lock` while it processes a frame of the stream, so with several workers the
frames of one stream are still handled one at a time and in order of processing.
"""
import logging
import threading
from typing import Dict, Optional

from daemon.counters import StreamCounters
from daemon.ops.logsetup import stream_logger
from daemon.pipeline.tracking import PromptTracker, StreamTrackers


class StreamContext:
    """Per-stream worker state. Created by the service when a stream starts, dropped when it stops.

    Times (`next_*`, `*_sent`) are on the stream's task clock (daemon.pipeline.frames.Frame.task_time).
    `failing`: task -> task-clock time until which that task runs apart from the others on this
    stream, because it failed (a failing question must not take the caption down with it).
    """

    def __init__(self, config, counters: StreamCounters, update_every_s: float) -> None:  # type: ignore[no-untyped-def]
        self.config = config
        self.name: str = config.name
        self.counters = counters
        self.lock = threading.Lock()
        self.log: logging.LoggerAdapter = stream_logger("daemon.pipeline.worker", self.name)  # type: ignore[type-arg]
        self.trackers = StreamTrackers(
            self.name,
            [
                PromptTracker(
                    prompt_id=p.id,
                    text=p.text,
                    enter=p.enter,
                    exit=p.exit,
                    dwell_s=p.dwell_s,
                    smoothing=p.smoothing,
                    update_every_s=update_every_s,
                    cooldown_s=p.cooldown_s,
                )
                for p in config.prompts
            ],
        )
        self.last_frame = None  # type: Optional[object]
        self.sampler = None  # type: Optional[object]  # the stream's Sampler: told which frames were inferred
        self.snapshot = None  # type: Optional[bytes]
        self.snapshot_frame = None  # type: Optional[object]
        self.next_caption = float("-inf")
        self.last_caption: Optional[str] = None
        self.last_caption_sent = float("-inf")
        self.next_question: Dict[str, float] = {q.id: float("-inf") for q in config.questions}
        self.last_answer: Dict[str, str] = {}
        self.last_answer_sent: Dict[str, float] = {}
        self.failing: Dict[str, float] = {}

    def back_online(self) -> None:
        """The stream came back after an outage: run the caption and the questions on the next
        frame and publish their results even if unchanged (subscribers may have cleared their
        view meanwhile). Caller holds `lock`."""
        self.next_caption = float("-inf")
        self.last_caption_sent = float("-inf")
        self.next_question = {qid: float("-inf") for qid in self.next_question}
        self.last_answer_sent = {}
