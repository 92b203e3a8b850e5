"""What crosses the queue between a stream's reader and the workers."""
from dataclasses import dataclass, field
from typing import Mapping

import numpy as np


@dataclass(frozen=True)
class Frame:
    """One decoded frame kept by the sampler.

    stream:    stream name (config `name`)
    index:     decoded-frame counter of this stream since it (re)opened; the `frame` of events
    pts_s:     presentation time in seconds from the source (stream time; files loop from 0)
    wall_time: capture time, seconds since the epoch (the `time` of events)
    mono_time: time.monotonic() at capture; frame age and latency are measured from it
    image:     BGR uint8 HxWx3 (sources convert gray/BGRA); never mutated after creation
    pixels:    model input the decoder's device already computed (`preprocess: tpu`): image size ->
               read-only float32 [1,3,size,size]; empty when the worker preprocesses `image`
    """

    stream: str
    index: int
    pts_s: float
    wall_time: float
    mono_time: float
    image: np.ndarray = field(repr=False, compare=False)
    pixels: Mapping[int, np.ndarray] = field(default_factory=dict, repr=False, compare=False)
