"""sail.Decoder source: files and RTSP decoded by the SOPHON VPU (reference/sophon-sail.md §5).

Facts this module is built around (read in sophon-sail v3.10.7 src/cvwrapper.cpp):
- `sail.set_decoder_env(key, value)` only sets SAIL_DECODER_<key>, read once when a Decoder is
  constructed: we set `rtsp_transport` tcp and `stimeout` (ffmpeg's socket timeout, in
  MICROseconds) from the spec's read timeout right before construction. sail applies them only
  when the URL starts with lowercase `rtsp:`: an `RTSP://` scheme is lower-cased here, and
  rtsps:// or http(s):// (no timeout at all: a read could block forever and the stall watchdog
  never fire) are refused, by `blipd check` and again here (daemon/config/sail_checks.py).
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
- `preprocess: tpu` (spec.preprocess): the frame that `retrieve()` converted also becomes the
  model's pixel values on the device, in blip/preprocess.py's order: `convert_format` to RGB
  planar at full size (a colour conversion before the resize, as the CPU path's BGR frame),
  `vpp_resize` to each size, `convert_to` into a float32 RGB planar BMImage with
  a_c = 1/(255 std_c), b_c = -mean_c/std_c (float32, as the CPU computes it), then
  `bm_image_to_tensor(...).asnumpy()`. `convert_to` on planar images returns success even when
  bmcv failed (it only printf()s; bmcv documents convert_to for BM1684/BM1684X only), leaving
  uninitialised device memory in the output: every result is checked (finite, inside the range
  the package's mean/std allow) and the first of each open is compared with the resized frame;
  a result that fails turns the device path off until the next open, with one warning, and the
  worker preprocesses on the CPU. Bicubic only on BM1684: BM1684X bmcv has no bicubic
  (BM1688/CV186AH unconfirmed), so there the resize is bilinear (parity: docs/sophon.md).
  The result is copied to host memory (one d2s copy, 1.7 MB at 384 px): sail's Tensor-form
  `process` on our SYSIO engines refuses an input Tensor without system memory ("bad input")
  and copies system memory over the device input, so a device-only tensor cannot be fed as is,
  and a numpy array crosses the worker queue with no device lifetime to manage. Bmcv calls hold
  the GIL (a few ms); a Bmcv failure is logged and the frame goes on without device pixels (the
  worker preprocesses it on the CPU).
"""
import logging
import os
import sys
import tempfile
import threading
from typing import Any, Dict, Optional, Tuple

import numpy as np

from blip.errors import BackendError
from blip.runtime.sail import import_sail, one_line, sail_errors
from daemon.config.sail_checks import sail_url
from daemon.errors import SourceError
from daemon.pipeline.sources.base import (
    DecoderUnavailable, DevicePreprocess, Source, SourceEnded, SourceSpec, check_file, file_path, is_file_url, to_bgr,
)

log = logging.getLogger(__name__)

ERR_DEC_READ = 5006
ERR_DEC_EOF = 5007
STDOUT_FD = 1
_FD_LOCK = threading.Lock()
"""Serialises the fd 1 redirection (and so the opens) across every sail stream of the process."""
BICUBIC_CHIPS = frozenset({"BM1684"})
"""Chips whose bmcv resize has BMCV_INTER_BICUBIC (reference/sophon-sail.md §7): BM1684X has only
NEAREST and LINEAR; BM1688/CV186AH are unconfirmed and get LINEAR too."""
SPOT_CHECK_TOLERANCE = 0.05
"""Largest difference (in normalised units, about 1/70 of the 0-255 range) between the device's
pixels and the same resized frame normalised on the host, on the first frame of an open."""


class DevicePixelError(ValueError):
    """The device produced pixel values that must not reach the model."""


def _import_sail() -> Any:
    try:
        return import_sail("decoder sail")
    except BackendError as exc:
        raise DecoderUnavailable(str(exc)) from None


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


def resize_algorithm(interpolation: str, target: str) -> str:
    """The resize the device does for the package's `interpolation` on chip `target` (Handle.
    get_target()): "bicubic" only where bmcv has it, else "bilinear"."""
    if interpolation == "bicubic" and target.upper() in BICUBIC_CHIPS:
        return "bicubic"
    return "bilinear"


def _target(handle: Any) -> str:
    try:
        return str(handle.get_target())
    except (AttributeError, RuntimeError):
        return "unknown"


class DevicePixels:
    """Bmcv on one Handle: a decoded BMImage -> {size: read-only float32 [1,3,size,size]}, the
    model's pixel values (module docstring). Used by one reader thread only."""

    def __init__(self, sail: Any, handle: Any, plan: DevicePreprocess) -> None:
        self._sail = sail
        self._handle = handle
        self._bmcv = sail.Bmcv(handle)
        self.plan = plan
        self.target = _target(handle)
        self.interpolation = resize_algorithm(plan.interpolation, self.target)
        names = sail.bmcv_resize_algorithm
        self._algorithm = names.BMCV_INTER_BICUBIC if self.interpolation == "bicubic" else names.BMCV_INTER_LINEAR
        # (x/255 - m)/s = x * 1/(255 s) - m/s per RGB plane; sail takes the pairs as C++ floats
        self._alpha_beta: Tuple[Tuple[float, float], ...] = tuple(
            (1.0 / (255.0 * float(s)), -float(m) / float(s)) for m, s in zip(plan.mean, plan.std)
        )
        # what (x/255 - m)/s can be for x in 0..255, per plane, with a little float slack
        mean, std = np.asarray(plan.mean, dtype=np.float32), np.asarray(plan.std, dtype=np.float32)
        self._low = ((0.0 - mean) / std - 1e-3).reshape(1, 3, 1, 1)
        self._high = ((1.0 - mean) / std + 1e-3).reshape(1, 3, 1, 1)
        self._spot_checked = False

    def __call__(self, image: Any) -> Dict[int, np.ndarray]:
        sail, bmcv = self._sail, self._bmcv
        planar = sail.Format.FORMAT_RGB_PLANAR
        rgb = bmcv.convert_format(image, planar)  # full size, once for every size
        out: Dict[int, np.ndarray] = {}
        for size in self.plan.sizes:
            resized = bmcv.vpp_resize(rgb, size, size, self._algorithm)
            normed = sail.BMImage(self._handle, size, size, planar, sail.ImgDtype.DATA_TYPE_EXT_FLOAT32)
            ret = bmcv.convert_to(resized, normed, self._alpha_beta)
            if ret not in (None, 0):
                raise DevicePixelError("convert_to returned %s" % (ret,))
            pixels = np.asarray(bmcv.bm_image_to_tensor(normed).asnumpy())  # a host copy: `normed` may go
            if pixels.shape != (1, 3, size, size) or pixels.dtype != np.float32:
                raise DevicePixelError("bm_image_to_tensor gave %s %s, not float32 (1, 3, %d, %d)"
                                       % (pixels.dtype, pixels.shape, size, size))
            self._check(pixels, resized)
            pixels.setflags(write=False)
            out[size] = pixels
        self._spot_checked = True
        return out

    def _check(self, pixels: np.ndarray, resized: Any) -> None:
        """Raise DevicePixelError for pixels that cannot come from a normalised frame (module
        docstring: convert_to may leave uninitialised memory and still return success)."""
        if not np.isfinite(pixels).all():
            raise DevicePixelError("convert_to left non-finite values (bmcv failed without saying so)")
        if (pixels < self._low).any() or (pixels > self._high).any():
            raise DevicePixelError("convert_to left values outside [%.2f, %.2f] (bmcv failed without saying so)"
                                   % (float(self._low.min()), float(self._high.max())))
        if self._spot_checked:
            return
        try:
            bgr = np.asarray(resized.asmat())
        except AttributeError:  # sail built without OpenCV: the range check has to do
            return
        size = pixels.shape[-1]
        if bgr.shape != (size, size, 3):
            return
        rgb = bgr[:, :, ::-1].transpose(2, 0, 1)[None].astype(np.float32)
        scale = np.asarray([a for a, _ in self._alpha_beta], dtype=np.float32).reshape(1, 3, 1, 1)
        offset = np.asarray([b for _, b in self._alpha_beta], dtype=np.float32).reshape(1, 3, 1, 1)
        worst = float(np.abs(rgb * scale + offset - pixels).max())
        if worst > SPOT_CHECK_TOLERANCE:
            raise DevicePixelError("convert_to differs from the resized frame by up to %.3f (bmcv failed without saying so)" % worst)


class SailSource(Source):
    """sail.Decoder on TPU `device` (0); one Handle and one Decoder per open; with
    `spec.preprocess`, the model's pixel values from Bmcv on the same device (`pixels()`)."""

    def __init__(self, spec: SourceSpec, device: Optional[int] = None) -> None:
        super().__init__(spec)
        device = spec.device if device is None else device
        self.device = device
        self._sail: Any = None
        self._handle: Any = None
        self._decoder: Any = None
        self._image: Any = None
        self._device_pixels: Optional[DevicePixels] = None
        self._pixel_errors: Tuple[type, ...] = ()
        self._pixel_failures = 0
        self._fps: Optional[float] = None
        self._grabbed = 0
        self._pts_s = 0.0
        self._code = 0

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
        path, why = sail_url(file_path(self.spec.url))
        if why:  # `blipd check` refuses these; a config that skipped it must not block forever
            raise DecoderUnavailable("stream %s: %s" % (self.spec.name, why))
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
        if self.spec.preprocess is not None:
            self._open_pixels(sail, errors)

    def _open_pixels(self, sail: Any, errors: Tuple[type, ...]) -> None:
        """Bmcv for `preprocess: tpu`; without it the stream still runs (CPU preprocessing)."""
        # a sail build lacking a method or taking other arguments fails like a bmcv error
        self._pixel_errors = errors + (AttributeError, TypeError, ValueError)
        self._pixel_failures = 0
        try:
            self._device_pixels = DevicePixels(sail, self._handle, self.spec.preprocess)  # type: ignore[arg-type]
        except self._pixel_errors as exc:
            log.warning("stream %s: preprocess tpu unavailable (%s): preprocessing on the CPU",
                        self.spec.name, self.spec.clean(one_line(exc)))
            return
        pixels = self._device_pixels
        log.debug("stream %s: preprocess tpu on %s: %s resize to %s (the package asks for %s)", self.spec.name,
                  pixels.target, pixels.interpolation, pixels.plan.sizes, pixels.plan.interpolation)

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

    def pixels(self) -> Optional[Dict[int, np.ndarray]]:
        if self._device_pixels is None or self._image is None:
            return None
        try:
            return self._device_pixels(self._image)
        except DevicePixelError as exc:  # would fail on every frame: off until the next open
            self._device_pixels = None
            self._pixel_failures += 1
            log.warning("stream %s: preprocess tpu gave unusable pixels on frame %d (%s); preprocessing on the "
                        "CPU until the stream reopens", self.spec.name, self._grabbed - 1, self.spec.clean(str(exc)))
            return None
        except self._pixel_errors as exc:
            self._pixel_failures += 1
            if self._pixel_failures == 1:  # once per open: the CPU path keeps the stream served
                log.warning("stream %s: preprocess tpu failed on frame %d (%s); preprocessing on the CPU",
                            self.spec.name, self._grabbed - 1, self.spec.clean(one_line(exc)))
            return None

    @property
    def read_code(self) -> int:
        """sail's code for the last failed read (0 before any): 5007 end of file (3.10.2+), 5006
        other failure, 1 on 3.9.0 (module docstring)."""
        return self._code

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
        self._device_pixels = None
        if decoder is not None:
            decoder.release()


def _pts(decoder: Any) -> Optional[float]:
    try:
        pts = float(decoder.get_pts_dts()[0])
    except (AttributeError, IndexError, TypeError, ValueError):
        return None
    return pts if pts > 0 else None

