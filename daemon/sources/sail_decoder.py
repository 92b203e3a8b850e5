"""sail.Decoder source: files and RTSP decoded by the SOPHON VPU (reference/sophon-sail.md §5).

Facts this module is built around:
- `sail.set_decoder_env(key, value)` only sets SAIL_DECODER_<key>, read once when a Decoder is
  constructed: we set `rtsp_transport` tcp and `stimeout` (ffmpeg's socket timeout, in
  MICROseconds) from the spec's read timeout right before construction.
- The Decoder prints `decoder ctor: filepath=<url>` and `open filepath=<url>` to the C-level stdout,
  credentials included, and its spdlog errors also go to stdout. Construction therefore runs with
  fd 1 pointed at a temporary file (os.dup2), under one process-wide lock; the captured text is
  logged at debug level with the stream's secrets masked. While an open is in progress, anything
  else the process writes to fd 1 lands in that file too (the daemon logs to stderr), and opens of
  sail streams are serialised: a camera that does not answer delays other sail opens by up to its
  timeout. The URL is printed again by `reconnect()` and by the automatic reopen after 20 failed
  reads; we use neither: the first failed read ends the source and the supervisor makes a new one.
- read return codes differ by version: 0 frame; >= 3.10.2: 5007 end of file (and `is_eof()`),
  5006 other failure; 3.9.1-3.9.4: 5006 for both; 3.9.0: 1 for both. Where EOF and failure look
  alike, a file that gave frames is reported as ended, a live stream as failed.
- `read(handle, img)` resizes into `img` when it already has another size: a fresh BMImage per read.
- `compressed=False`: the compressed VPU output needs a width divisible by 16; `asmat()` converts
  any format to BGR (sail built with OpenCV), else bmcv convert_format to BGR packed.
"""
import logging
import os
import sys
import tempfile
import threading
from typing import Any, Optional

import numpy as np

from blip.runtime.sail import one_line, sail_errors
from daemon.errors import SourceError
from daemon.sources.base import DecoderUnavailable, Source, SourceEnded, SourceSpec, check_file, is_file_url, to_bgr

log = logging.getLogger(__name__)

ERR_DEC_READ = 5006
ERR_DEC_EOF = 5007
STDOUT_FD = 1
_FD_LOCK = threading.Lock()
"""Serialises the fd 1 redirection (and so the opens) across every sail stream of the process."""


def _import_sail() -> Any:
    try:
        import sophon.sail as sail
    except ImportError as exc:
        raise DecoderUnavailable("decoder sail is not available (sophon.sail: %s)" % exc) from None
    return sail


class _CapturedStdout:
    """fd 1 -> a temporary file for the duration of a `with` block; `text` holds what was written.

    A closed fd 1 (no stdout under some supervisors) is redirected too, then closed again: else
    the decoder's first open file could become fd 1 and receive the printout.
    """

    def __init__(self) -> None:
        self.text = ""

    def __enter__(self) -> "_CapturedStdout":
        _FD_LOCK.acquire()
        try:
            _flush_stdout()
            self._file = tempfile.TemporaryFile()
            try:
                self._saved: Optional[int] = os.dup(STDOUT_FD)
            except OSError:
                self._saved = None
            os.dup2(self._file.fileno(), STDOUT_FD)
        except BaseException:
            _FD_LOCK.release()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            _flush_stdout()
            if self._saved is None:
                os.close(STDOUT_FD)
            else:
                os.dup2(self._saved, STDOUT_FD)
                os.close(self._saved)
            self._file.seek(0)
            self.text = self._file.read(65536).decode("utf-8", "replace")
            self._file.close()
        finally:
            _FD_LOCK.release()


def _flush_stdout() -> None:
    """Python-level output written before (after) the redirection stays out of (in) the capture."""
    if sys.stdout is not None:
        try:
            sys.stdout.flush()
        except (OSError, ValueError):
            pass


class SailSource(Source):
    """sail.Decoder on TPU `device` (0); one Handle and one Decoder per open."""

    def __init__(self, spec: SourceSpec, device: Optional[int] = None) -> None:
        super().__init__(spec)
        device = spec.device if device is None else device
        self.device = device
        self._sail: Any = None
        self._handle: Any = None
        self._decoder: Any = None
        self._image: Any = None
        self._fps: Optional[float] = None
        self._grabbed = 0
        self._pts_s = 0.0
        self._code = 0

    def _fail(self, why: str) -> SourceError:
        return SourceError("stream %s: cannot open %s: %s" % (self.spec.name, self.spec.display_url, self.spec.clean(why)))

    def open(self) -> None:
        self.close()
        sail = _import_sail()
        is_file = is_file_url(self.spec.url)
        if is_file:
            check_file(self.spec)
        errors = sail_errors(sail)
        try:
            self._handle = sail.Handle(self.device)
        except errors as exc:
            raise self._fail("TPU %d: %s" % (self.device, one_line(exc))) from None
        path = self.spec.url[len("file://"):] if self.spec.url.startswith("file://") else self.spec.url
        captured = _CapturedStdout()
        try:
            with captured:
                if not is_file:
                    sail.set_decoder_env("rtsp_transport", "tcp")
                    sail.set_decoder_env("stimeout", str(max(1, int(self.spec.read_timeout_s * 1000000))))
                decoder = sail.Decoder(path, False, self.device)
        except errors as exc:
            self._log_captured(captured.text)
            raise self._fail(one_line(exc)) from None
        self._log_captured(captured.text)
        if not decoder.is_opened():
            decoder.release()
            raise self._fail("decoder did not open")
        self._sail, self._decoder = sail, decoder
        fps = float(decoder.get_fps())
        self._fps = fps if 0.0 < fps < 1000.0 else None
        self._grabbed, self._pts_s, self._code, self._image = 0, 0.0, 0, None

    def _log_captured(self, text: str) -> None:
        for line in text.splitlines():
            if line.strip():
                log.debug("stream %s: sail: %s", self.spec.name, self.spec.clean(line))

    def grab(self) -> bool:
        if self._decoder is None:
            return False
        image = self._sail.BMImage()  # fresh: a sized one would get the frame VPP-resized into it
        code = int(self._decoder.read(self._handle, image))  # releases the GIL while it decodes
        if code != 0:
            self._code = code
            self._image = None
            return False
        self._image = image
        self._grabbed += 1
        pts = _pts(self._decoder)
        self._pts_s = pts if pts is not None else (self._grabbed - 1) / (self._fps or 25.0)
        return True

    def retrieve(self) -> Optional[np.ndarray]:
        if self._image is None:
            return None
        try:
            mat = self._image.asmat()
        except AttributeError:  # sail built without OpenCV
            bmcv = self._sail.Bmcv(self._handle)
            mat = bmcv.convert_format(self._image, self._sail.Format.FORMAT_BGR_PACKED).asnumpy()
        return to_bgr(np.asarray(mat))

    def _at_eof(self) -> bool:
        if self._code == ERR_DEC_EOF:
            return True
        is_eof = getattr(self._decoder, "is_eof", None)
        if is_eof is not None:
            return bool(is_eof())
        # before 3.10.2 the end of a file and a failure return the same code
        return is_file_url(self.spec.url) and self._grabbed > 0

    def end_reason(self) -> SourceError:
        name, where = self.spec.name, self.spec.display_url
        if self._decoder is not None and self._at_eof():
            return SourceEnded("stream %s: end of %s after %d frames (sail code %d)" % (name, where, self._grabbed, self._code))
        if self._grabbed == 0 and is_file_url(self.spec.url):
            return SourceError("stream %s: no decodable frame in %s (sail code %d)" % (name, where, self._code))
        return SourceError("stream %s: %s read failed after %d frames (sail code %d)" % (name, where, self._grabbed, self._code))

    def close(self) -> None:
        decoder, self._decoder = self._decoder, None
        self._image = None
        if decoder is not None:
            decoder.release()


def _pts(decoder: Any) -> Optional[float]:
    try:
        pts = float(decoder.get_pts_dts()[0])
    except (AttributeError, IndexError, TypeError, ValueError):
        return None
    return pts if pts > 0 else None

