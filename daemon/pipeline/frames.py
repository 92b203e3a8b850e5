"""What crosses the queue between a stream's reader and the workers."""
from dataclasses import dataclass, field
from typing import Mapping, Optional

import numpy as np


@dataclass(frozen=True)
class Frame:
    """One decoded frame kept by the sampler.

    stream:    stream name (config `name`)
    index:     decoded-frame counter of this stream since it (re)opened; the `frame` of events
    pts_s:     presentation time in seconds from the source (stream time; files loop from 0)
    wall_time: capture time, seconds since the epoch (the `time` of events); for a file read with
               `realtime: false`, the time the stream started plus `media_s`
    mono_time: time.monotonic() at capture; frame age and latency are measured from it
    image:     BGR uint8 HxWx3 (sources convert gray/BGRA); never mutated after creation
    pixels:    model input the decoder's device already computed (`preprocess: tpu`): image size ->
               read-only float32 [1,3,size,size]; empty when the worker preprocesses `image`
    media_s:   files read with `realtime: false`: media time, the pts continued across loops and
               pts discontinuities (never goes back); None for live and paced streams
    """

    stream: str
    index: int
    pts_s: float
    wall_time: float
    mono_time: float
    image: np.ndarray = field(repr=False, compare=False)
    pixels: Mapping[int, np.ndarray] = field(default_factory=dict, repr=False, compare=False)
    media_s: Optional[float] = None

    @property
    def task_time(self) -> float:
        """The clock task intervals and heartbeats run on: media time for a file read as fast as
        the worker goes (the same events whatever the speed), else the monotonic capture time."""
        return self.mono_time if self.media_s is None else self.media_s
