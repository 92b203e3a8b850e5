"""The frame-source interface every decoder implements, and what a source needs to open a stream.

A source is used by exactly one thread (its stream's supervisor): `open()`, then `grab()` every
frame, `retrieve()` only the frames the sampler keeps (decoding to BGR costs more than grabbing),
`close()`. When `grab()` returns False, `end_reason()` says why: `SourceEnded` (a file reached its
end: the supervisor stops or loops) or another `SourceError` (the supervisor reconnects).
A source that decodes on an accelerator may also offer the model's pixel values of the frame it
retrieved (`pixels()`, config `preprocess: tpu`); the others return None and the worker
preprocesses on the CPU.
"""
import abc
import os
import stat
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

import numpy as np

from daemon.errors import SourceError
from blip.redact import redact_text, redact_url, url_secrets

__all__ = [
    "DecoderUnavailable", "DevicePreprocess", "Source", "SourceEnded", "SourceError", "SourceSpec",
    "check_file", "file_path", "is_file_url", "to_bgr",
]


class SourceEnded(SourceError):
    """A file source reached its end normally (not a failure: the stream is `ended` or loops)."""


class DecoderUnavailable(SourceError):
    """The configured decoder cannot be used on this machine: retrying will not help."""


@dataclass(frozen=True)
class DevicePreprocess:
    """The model input a source computes on its decoder's device (config `preprocess: tpu`), the
    way blip/preprocess.py does on the CPU: resize to size x size (stretch), RGB, /255,
    (x - mean) / std, float32 [1,3,size,size].

    sizes:         the square image sizes the stream's tasks take (caption and match share one)
    mean, std:     the model package's RGB normalisation
    interpolation: the package's resize, bicubic | bilinear; a chip without bicubic uses bilinear
    """

    sizes: Tuple[int, ...]
    mean: Tuple[float, float, float]
    std: Tuple[float, float, float]
    interpolation: str = "bicubic"


@dataclass(frozen=True)
class SourceSpec:
    """How to open one stream; built by the service from the stream's config.

    name:           stream name, on every log line and error
    url:            what the decoder opens, secrets included: never logged (repr hides it)
    display_url:    `url` with credentials masked; computed from `url` when left empty
    is_live:        a camera (reconnect forever, sample by wall time) vs a file (ends, sample by pts)
    loop:           files only: restart from the beginning at the end
    decoder:        auto | opencv | pyav | sail
    hwaccel:        ask the decoder for hardware decoding when it has it
    open_timeout_s: bound on connecting/probing (OpenCV's default is 30 s)
    read_timeout_s: bound on one blocked read; the supervisor lowers it to its stall timeout
    realtime:       files only: pace reading to the file's frame rate (live-like playback); False:
                    read as fast as the workers take frames, tasks on media time (streams.py)
    device:         accelerator device id for hardware decoders (sail: the TPU's VPU)
    preprocess:     model pixel values to compute on that device beside the BGR frame; None: none
    """

    name: str
    url: str = field(repr=False)
    display_url: str = ""
    is_live: bool = True
    loop: bool = False
    decoder: str = "auto"
    hwaccel: bool = False
    open_timeout_s: float = 10.0
    read_timeout_s: float = 10.0
    realtime: bool = True
    device: int = 0
    preprocess: Optional[DevicePreprocess] = None

    def __post_init__(self) -> None:
        if not self.display_url:
            object.__setattr__(self, "display_url", redact_url(self.url))

    def secrets(self) -> List[str]:
        """The URL's secret parts, for cleaning decoder messages."""
        return url_secrets(self.url)

    def clean(self, text: str) -> str:
        """`text` with this stream's secrets masked and folded onto one line."""
        return " ".join(redact_text(str(text), self.secrets()).split())


def is_file_url(url: str) -> bool:
    """A plain path or file:// URL (anything else with a scheme is a network stream)."""
    return url.startswith("file://") or "://" not in url


def file_path(url: str) -> str:
    """What a decoder opens for a file URL: the path without its `file://` prefix."""
    return url[len("file://"):] if url.startswith("file://") else url


def check_file(spec: SourceSpec) -> None:
    """Fail fast with a clear reason before a decoder turns a bad path into a vague error."""
    path = file_path(spec.url)
    prefix = "stream %s: cannot open %s: " % (spec.name, spec.display_url)
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise SourceError(prefix + "no such file") from None
    except OSError as exc:
        raise SourceError(prefix + (exc.strerror or type(exc).__name__).lower()) from None
    if stat.S_ISDIR(info.st_mode):
        raise SourceError(prefix + "is a directory")
    if not stat.S_ISREG(info.st_mode):
        raise SourceError(prefix + "not a regular file")
    if info.st_size == 0:
        raise SourceError(prefix + "empty file")
    if not os.access(path, os.R_OK):
        raise SourceError(prefix + "permission denied")


def to_bgr(image: Optional[np.ndarray]) -> Optional[np.ndarray]:
    """BGR uint8 HxWx3 from what decoders hand out (gray, BGRA); None stays None."""
    if image is None or image.size == 0:
        return None
    if image.dtype != np.uint8:
        image = np.clip(image, 0, 255).astype(np.uint8)
    if image.ndim == 2:
        return np.ascontiguousarray(np.repeat(image[:, :, None], 3, axis=2))
    if image.ndim == 3 and image.shape[2] == 1:
        return np.ascontiguousarray(np.repeat(image, 3, axis=2))
    if image.ndim == 3 and image.shape[2] == 4:
        return np.ascontiguousarray(image[:, :, :3])
    if image.ndim == 3 and image.shape[2] == 3:
        return image
    return None


class Source(abc.ABC):
    """One open stream. Not thread-safe: only the supervisor's thread calls it, close() included."""

    def __init__(self, spec: SourceSpec) -> None:
        self.spec = spec
        self._grabbed = 0
        self._pts_s = 0.0
        self._fps: Optional[float] = None

    def _fail(self, why: str) -> SourceError:
        """The one-line error of a failed open: stream, masked URL, why (secrets masked)."""
        spec = self.spec
        return SourceError("stream %s: cannot open %s: %s" % (spec.name, spec.display_url, spec.clean(why)))

    @abc.abstractmethod
    def open(self) -> None:
        """Connect / open and probe; raises SourceError (one redacted line) within open_timeout_s."""

    @abc.abstractmethod
    def grab(self) -> bool:
        """Advance one frame without converting it; False when no frame came (see end_reason)."""

    @abc.abstractmethod
    def retrieve(self) -> Optional[np.ndarray]:
        """The last grabbed frame as BGR uint8 HxWx3, or None if it cannot be converted."""

    @abc.abstractmethod
    def end_reason(self) -> SourceError:
        """Why the last grab() returned False: SourceEnded at a file's end, else a SourceError."""

    def pixels(self) -> Optional[Dict[int, np.ndarray]]:
        """Model pixel values of the frame `retrieve()` returned last, computed on the decoder's
        device per `spec.preprocess`: image size -> read-only float32 [1,3,size,size]. None when
        this source has no device or could not do it (the worker preprocesses on the CPU then)."""
        return None

    @property
    def pts_s(self) -> float:
        """Presentation time of the last grabbed frame, seconds of stream time (0 at open), as the
        source says: it may go back (concatenated recordings, a camera whose clock resets); the
        supervisor turns that into a new segment of the sampling grid."""
        return self._pts_s

    @property
    def fps(self) -> Optional[float]:
        """Nominal frame rate, None when the container does not say."""
        return self._fps

    @property
    def skipped(self) -> int:
        """Undecodable packets skipped since open() to go on with the next decodable frame."""
        return 0

    @abc.abstractmethod
    def close(self) -> None:
        """Release the decoder; safe to call twice and after a failed open()."""


EARLY_END_RATIO = 0.9
"""A file that stops before this share of the frames its header announces is reported as damaged."""


def ffmpeg_end_reason(spec: SourceSpec, grabbed: int, frame_count: int, blocked_s: float,
                      detail: str = "", skipped: int = 0) -> SourceError:
    """Why an FFmpeg-based decoder's grab() failed (OpenCV and PyAV word it the same way):
    files end (SourceEnded, early when short of the header's count or `detail` says why; with
    how many frames were lost to `skipped` undecodable packets), live streams time out or are
    lost (SourceError)."""
    name, where = spec.name, spec.display_url
    why = " (%s)" % spec.clean(detail) if detail else ""
    if not spec.is_live or is_file_url(spec.url):
        if grabbed == 0:
            return SourceError("stream %s: no decodable frame in %s%s" % (name, where, why))
        of = " of %d" % frame_count if frame_count else ""
        if skipped:  # went on past damage to the end: say what it cost
            lost = max(0, frame_count - grabbed) if frame_count else skipped
            return SourceEnded("stream %s: end of %s after %d%s frames; %d undecodable packet(s) skipped, "
                               "%d frame(s) lost (damaged file?)%s" % (name, where, grabbed, of, skipped, lost, why))
        if detail or (frame_count and grabbed < EARLY_END_RATIO * frame_count):
            return SourceEnded("stream %s: %s ended early at frame %d%s%s (damaged file?)"
                               % (name, where, grabbed, of, why))
        return SourceEnded("stream %s: end of %s after %d frames" % (name, where, grabbed))
    if blocked_s >= 0.8 * spec.read_timeout_s:
        return SourceError("stream %s: no frame from %s for %.1f s (read timeout)" % (name, where, blocked_s))
    return SourceError("stream %s: %s lost after %d frames%s" % (name, where, grabbed, why))
