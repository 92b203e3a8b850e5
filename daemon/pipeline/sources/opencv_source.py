"""OpenCV (FFmpeg backend) source: files and network streams (RTSP, HTTP, HLS).

Facts this module is built around:
- OpenCV takes open/read timeouts only as constructor parameters (default 30 s each); a read that
  hangs on a silent camera is interrupted after CAP_PROP_READ_TIMEOUT_MSEC and grab() returns False.
- OpenCV serialises FFmpeg opens behind one global lock: a camera that does not answer delays the
  opens (not the reads) of every other stream by up to its open timeout. Opens therefore run in the
  stream's own thread, and open timeouts should stay short.
- RTSP transport can only be chosen through the process-global OPENCV_FFMPEG_CAPTURE_OPTIONS
  variable. We default it to TCP (no UDP packet loss or NAT trouble, one port) when this module is
  first imported, before any capture is opened here: setting the environment while another thread
  is inside an FFmpeg open could race with its getenv(). A value set by the operator is kept; the
  limitation is that every stream of the process gets the same transport.
- A VideoCapture must not be released while another thread grabs from it, so close() is only called
  by the stream's own thread.
- FFmpeg's own log lines (h264 decoding errors, connection failures) and OpenCV's warnings would
  go to stderr around the daemon's log format: OPENCV_FFMPEG_LOGLEVEL (read at the first FFmpeg
  open) is defaulted to quiet and OpenCV's log level lowered to errors (unless an operator asked
  for more through OPENCV_LOG_LEVEL), so every failure reaches the journal as one line of ours.
- grab() stops at the first undecodable packet and a seek does not get it past one: a file that
  stops before the frame count its header announces is reopened past the damage (seeking ahead in
  small steps, then doubling ones), so a corrupt region costs about its own frames, not the rest
  of the file, and a cut one costs a few reopens.
"""
import os
import time
from typing import List, Optional

import numpy as np

from daemon.errors import SourceError
from daemon.pipeline.sources.base import (
    Source, SourceSpec, check_file, ffmpeg_end_reason, file_path, is_file_url, to_bgr,
)

CAPTURE_OPTIONS_ENV = "OPENCV_FFMPEG_CAPTURE_OPTIONS"
os.environ.setdefault(CAPTURE_OPTIONS_ENV, "rtsp_transport;tcp")
LOG_LEVEL_ENV = "OPENCV_FFMPEG_LOGLEVEL"
os.environ.setdefault(LOG_LEVEL_ENV, "-8")  # AV_LOG_QUIET

import cv2  # noqa: E402  (after the environment default above)

if "OPENCV_LOG_LEVEL" not in os.environ:
    # OpenCV's own "[ WARN:0@0.19] global cap.cpp:212 open VIDEOIO(FFMPEG): ..." on every failed open
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)

NOT_VIDEO_FOURCC = {b"ansi", b"bint", b"xbin", b"idf\x00"}
"""Codecs FFmpeg uses to render text files as "video" (its tty/bintext demuxers): not a camera."""
RESUME_STEPS_PER_S = 5
"""A seek past a damaged region skips 1/RESUME_STEPS_PER_S s of video at first ..."""
LINEAR_RESUMES = 100
"""... for this many seeks, then twice as far each time."""


def _nominal_fps(value: float) -> Optional[float]:
    return float(value) if 0.0 < value < 1000.0 else None


class OpenCVSource(Source):
    """cv2.VideoCapture with the FFmpeg backend."""

    def __init__(self, spec: SourceSpec) -> None:
        super().__init__(spec)
        self._cap = None  # type: Optional[cv2.VideoCapture]
        self._frame_count = 0
        self._last_grab_blocked_s = 0.0
        self._opened_at = 0.0
        self._is_file = False
        self._position = 0.0
        self._skipped = 0
        self._has_pts = False

    def _params(self) -> List[int]:
        params = [
            cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, max(1, int(self.spec.open_timeout_s * 1000)),
            cv2.CAP_PROP_READ_TIMEOUT_MSEC, max(1, int(self.spec.read_timeout_s * 1000)),
        ]
        if self.spec.hwaccel:
            params += [cv2.CAP_PROP_HW_ACCELERATION, cv2.VIDEO_ACCELERATION_ANY]
        return params

    def open(self) -> None:
        is_file = is_file_url(self.spec.url)
        if is_file:
            check_file(self.spec)
        started = time.monotonic()
        try:
            cap = cv2.VideoCapture(self._target(), cv2.CAP_FFMPEG, self._params())
        except cv2.error as exc:
            raise self._fail(str(exc).strip().splitlines()[-1] if str(exc).strip() else "OpenCV error") from None
        if not cap.isOpened():
            cap.release()
            waited = time.monotonic() - started
            if is_file:
                raise self._fail("not a video file or unsupported format")
            if waited >= 0.9 * self.spec.open_timeout_s:
                raise self._fail("no answer within %.1f s" % self.spec.open_timeout_s)
            raise self._fail("refused, not found or not a stream")
        fourcc = int(cap.get(cv2.CAP_PROP_FOURCC)) & 0xFFFFFFFF
        if fourcc.to_bytes(4, "little") in NOT_VIDEO_FOURCC:
            cap.release()
            raise self._fail("not a video (text)")
        self._cap = cap
        self._fps = _nominal_fps(cap.get(cv2.CAP_PROP_FPS))
        count = cap.get(cv2.CAP_PROP_FRAME_COUNT)
        self._frame_count = int(count) if is_file and 0 < count < 1e9 else 0
        self._grabbed = 0
        self._pts_s = 0.0
        self._opened_at = time.monotonic()
        self._is_file = is_file
        self._position = 0.0
        self._skipped = 0
        self._has_pts = False

    def _target(self) -> str:
        return file_path(self.spec.url) if is_file_url(self.spec.url) else self.spec.url

    def grab(self) -> bool:
        if self._cap is None:
            return False
        started = time.monotonic()
        ok = bool(self._cap.grab()) or self._resume()
        self._last_grab_blocked_s = time.monotonic() - started
        if ok:
            self._grabbed += 1
            self._pts_s = self._frame_pts()  # as the file says: the supervisor handles jumps back
            self._position = self._cap.get(cv2.CAP_PROP_POS_FRAMES)
        return ok

    def _resume(self) -> bool:
        """A file that stopped short of its announced frame count: reopen and seek past the damage."""
        if not (self._is_file and self._frame_count and self._grabbed):
            return False
        step = max(1, int(round((self._fps or 25.0) / RESUME_STEPS_PER_S)))
        target, attempts = self._position, 0
        while target + step < self._frame_count:
            target += step
            attempts += 1
            if attempts >= LINEAR_RESUMES:
                step *= 2  # a long damaged region (or a cut file) costs a few reopens, not one per step
            assert self._cap is not None
            self._cap.release()
            self._cap = cv2.VideoCapture(self._target(), cv2.CAP_FFMPEG, self._params())
            if not self._cap.isOpened():
                return False
            self._cap.set(cv2.CAP_PROP_POS_FRAMES, target)
            if self._cap.grab():
                self._skipped += int(target - self._position)
                return True
        return False

    @property
    def skipped(self) -> int:
        return self._skipped

    def _frame_pts(self) -> float:
        assert self._cap is not None
        msec = self._cap.get(cv2.CAP_PROP_POS_MSEC)
        if msec == msec and msec > 0:
            self._has_pts = True
        # 0 is a real timestamp at the start or once the file showed real ones (recordings joined)
        if msec == msec and msec >= 0 and (msec > 0 or self._grabbed <= 2 or self._has_pts):
            return msec / 1000.0
        if self._fps:
            return (self._grabbed - 1) / self._fps
        return time.monotonic() - self._opened_at

    def retrieve(self) -> Optional[np.ndarray]:
        if self._cap is None:
            return None
        ok, image = self._cap.retrieve()
        return to_bgr(image) if ok else None

    def end_reason(self) -> SourceError:
        return ffmpeg_end_reason(self.spec, self._grabbed, self._frame_count, self._last_grab_blocked_s,
                                 skipped=self._skipped)

    def close(self) -> None:
        cap, self._cap = self._cap, None
        if cap is not None:
            cap.release()
