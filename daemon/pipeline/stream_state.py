"""What the workers remember about one stream between frames: due times, last texts, trackers.

A worker holds `lock` while it processes a frame of the stream, so with several workers the
frames of one stream are still handled one at a time and in order of processing.
"""
import collections
import logging
import threading
from typing import Deque, Dict, Optional

from daemon.counters import StreamCounters
from daemon.ops.logsetup import stream_logger
from daemon.pipeline.tracking import PromptTracker, StreamTrackers

LATENCY_WINDOW = 512
"""Latency samples kept per stream for the stats percentiles (bounded memory)."""


class StreamState:
    """Per-stream worker state. Created by the service when a stream starts, dropped when it stops."""

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
        self.sampler = None  # type: Optional[object]  # daemon.pipeline.sampler.Sampler: told which frames were inferred
        self.snapshot = None  # type: Optional[bytes]
        self.snapshot_frame = None  # type: Optional[object]
        self.next_caption = float("-inf")
        self.last_caption: Optional[str] = None
        self.last_caption_sent = float("-inf")
        self.next_question: Dict[str, float] = {q.id: float("-inf") for q in config.questions}
        self.last_answer: Dict[str, str] = {}
        self.last_answer_sent: Dict[str, float] = {}
        self.latencies_ms: Deque[float] = collections.deque(maxlen=LATENCY_WINDOW)
        self._latency_lock = threading.Lock()

    def record_latency(self, ms: float) -> None:
        with self._latency_lock:
            self.latencies_ms.append(ms)

    def take_latencies(self) -> list:  # type: ignore[type-arg]
        """Samples since the last call (the stats interval)."""
        with self._latency_lock:
            samples = list(self.latencies_ms)
            self.latencies_ms.clear()
        return samples
