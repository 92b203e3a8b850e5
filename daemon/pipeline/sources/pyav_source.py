"""PyAV (FFmpeg through `av`) source: per-stream FFmpeg options instead of OpenCV's process-global ones.

Compared with the OpenCV source: RTSP transport is set per stream (TCP), the open and read timeouts
are enforced by PyAV's interrupt callback, and opens do not queue behind a global lock. `grab()`
decodes a frame (YUV), `retrieve()` converts it to BGR, the costly part, only for kept frames.
`hwaccel` is not used here (PyAV's hardware decoding API differs across versions).

Packets are demuxed and decoded one by one: a packet the decoder rejects (a damaged region of a
file, a corrupt packet from a camera) is skipped and counted (`skipped`), and decoding goes on
with the next one; only a demuxer error (I/O, network) ends the source. A live stream that sends
MAX_SKIPPED_IN_A_ROW undecodable packets in a row ends with that reason (reconnect).
FFmpeg's own log lines are silenced (one formatted line of ours reports each failure).

`av` is an optional dependency: importing this module without it raises ImportError, which the
factory turns into "decoder pyav is not available".
"""
import time
from typing import Any, Dict, Iterator, Optional

import av
import av.error
import av.logging
import numpy as np

from daemon.errors import SourceError
from daemon.pipeline.sources.base import (
    Source, SourceSpec, check_file, ffmpeg_end_reason, file_path, is_file_url, to_bgr,
)

av.logging.set_level(av.logging.PANIC)  # FFmpeg's raw stderr lines: our log line says it once

NOT_VIDEO_CODECS = {"ansi", "bintext", "xbin", "idf"}
"""Codecs FFmpeg uses to render text files as "video": not a camera."""
MAX_SKIPPED_IN_A_ROW = 300
"""Live streams only: this many undecodable packets without a frame end the source."""


class PyAVSource(Source):
    """av.open() + the first video stream's decoder."""

    def __init__(self, spec: SourceSpec) -> None:
        super().__init__(spec)
        self._container: Any = None
        self._frames: Optional[Iterator[Any]] = None
        self._frame: Any = None
        self._frame_count = 0
        self._base_pts: Optional[float] = None
        self._error: Optional[str] = None
        self._last_grab_blocked_s = 0.0
        self._skipped = 0

    def _options(self) -> Dict[str, str]:
        if self.spec.url.startswith(("rtsp://", "rtsps://")):
            return {"rtsp_transport": "tcp"}
        return {}

    def open(self) -> None:
        is_file = is_file_url(self.spec.url)
        if is_file:
            check_file(self.spec)
        url = file_path(self.spec.url) if is_file else self.spec.url
        started = time.monotonic()
        try:
            container = av.open(url, options=self._options(),
                                timeout=(self.spec.open_timeout_s, self.spec.read_timeout_s))
        except av.error.FFmpegError as exc:
            if is_file:
                raise self._fail("not a video file or unsupported format") from None
            if time.monotonic() - started >= 0.9 * self.spec.open_timeout_s:
                raise self._fail("no answer within %.1f s" % self.spec.open_timeout_s) from None
            raise self._fail(getattr(exc, "strerror", None) or type(exc).__name__) from None
        video = container.streams.video
        if not video or video[0].codec_context.name in NOT_VIDEO_CODECS:
            container.close()
            raise self._fail("no video stream" if not video else "not a video (text)")
        stream = video[0]
        stream.thread_type = "AUTO"
        self._container = container
        self._frames = self._decode(container, stream)
        rate = stream.average_rate or stream.guessed_rate
        self._fps = float(rate) if rate and 0 < float(rate) < 1000 else None
        self._frame_count = int(stream.frames or 0) if is_file else 0
        self._grabbed, self._pts_s, self._base_pts, self._error, self._skipped = 0, 0.0, None, None, 0

    def _decode(self, container: Any, stream: Any) -> Iterator[Any]:
        """Frames of `stream`, skipping packets the decoder rejects (demuxer errors propagate)."""
        in_a_row = 0
        for packet in container.demux(stream):
            try:
                frames = packet.decode()
            except av.error.FFmpegError:
                self._skipped += 1
                in_a_row += 1
                if self.spec.is_live and in_a_row >= MAX_SKIPPED_IN_A_ROW:
                    raise
                continue
            in_a_row = 0
            for frame in frames:
                yield frame

    @property
    def skipped(self) -> int:
        return self._skipped

    def grab(self) -> bool:
        if self._frames is None:
            return False
        started = time.monotonic()
        try:
            frame = next(self._frames)
        except StopIteration:
            self._frames = None
            return False
        except av.error.FFmpegError as exc:
            self._error = getattr(exc, "strerror", None) or type(exc).__name__
            self._frames = None
            return False
        finally:
            self._last_grab_blocked_s = time.monotonic() - started
        self._frame = frame
        self._grabbed += 1
        self._pts_s = self._frame_time(frame)  # as the file says: the supervisor handles jumps back
        return True

    def _frame_time(self, frame: Any) -> float:
        t = frame.time
        if t is None:
            return (self._grabbed - 1) / self._fps if self._fps else self._pts_s
        if self._base_pts is None:
            self._base_pts = float(t)
        return float(t) - self._base_pts

    def retrieve(self) -> Optional[np.ndarray]:
        if self._frame is None:
            return None
        return to_bgr(self._frame.to_ndarray(format="bgr24"))

    def end_reason(self) -> SourceError:
        return ffmpeg_end_reason(self.spec, self._grabbed, self._frame_count, self._last_grab_blocked_s,
                                 self._error or "", skipped=self._skipped)

    def close(self) -> None:
        container, self._container = self._container, None
        self._frames = None
        self._frame = None
        if container is not None:
            container.close()
