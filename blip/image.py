"""Image files -> BGR uint8 frames, refusing absurd sizes before anything large is allocated.

cv2 would happily allocate 1.2 GB for a 20000x20000 JPEG (its own limit is 2^30 pixels), so the
dimensions are read from the file header first. OPENCV_IO_MAX_IMAGE_PIXELS is also lowered, but
OpenCV reads it once when it loads, so it only helps if `import_cv2` runs before anyone else
imports cv2; the header check covers the formats below either way.
"""
import os
import struct
import sys
from typing import Any, Optional, Tuple

import numpy as np

from blip.errors import ImageError

DEFAULT_MAX_PIXELS = 64 * 1024 * 1024  # 8K video is 33 M pixels
DEFAULT_MAX_BYTES = 256 * 1024 * 1024
_CV_LIMIT_ENV = "OPENCV_IO_MAX_IMAGE_PIXELS"
# JPEG start-of-frame markers (all but DHT C4, JPG C8 and DAC CC) carry the frame dimensions.
_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


def import_cv2() -> Any:
    """Import cv2 (opencv-python or sophon-opencv), setting its decode pixel limit first."""
    if "cv2" not in sys.modules:
        os.environ.setdefault(_CV_LIMIT_ENV, str(DEFAULT_MAX_PIXELS))
    try:
        import cv2
    except ImportError as exc:
        raise ImageError("OpenCV (cv2) is not available (%s): install sophon-opencv or 'blipd[cv]'" % exc) from None
    return cv2


def load_image(path: str, max_pixels: int = DEFAULT_MAX_PIXELS, max_bytes: int = DEFAULT_MAX_BYTES) -> np.ndarray:
    """Read an image file as BGR uint8 HxWx3; one-line ImageError naming the file on any problem."""
    data = _read(path, max_bytes)
    try:
        size = image_size(data)
    except ImageError as exc:
        raise ImageError("%s: %s" % (path, exc)) from None
    if size is not None:
        width, height = size
        if width <= 0 or height <= 0:
            raise ImageError("%s: corrupt image header (%dx%d)" % (path, width, height))
        if width * height > max_pixels:
            raise ImageError("%s: %dx%d pixels is over the limit of %d" % (path, width, height, max_pixels))
    cv2 = import_cv2()
    try:
        image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
    except cv2.error as exc:
        raise ImageError("%s: cannot decode: %s" % (path, str(exc).strip().splitlines()[-1])) from None
    if image is None or image.size == 0:
        raise ImageError("%s: not an image OpenCV can decode (corrupt or unknown format)" % path)
    if image.shape[0] * image.shape[1] > max_pixels:
        height, width = image.shape[:2]
        raise ImageError("%s: %dx%d pixels is over the limit of %d" % (path, width, height, max_pixels))
    return image


def _read(path: str, max_bytes: int) -> bytes:
    try:
        if os.path.isdir(path):
            raise ImageError("%s: is a directory, not an image file" % path)
        with open(path, "rb") as fh:
            data = fh.read(max_bytes + 1)
    except FileNotFoundError:
        raise ImageError("%s: no such file" % path) from None
    except PermissionError:
        raise ImageError("%s: permission denied" % path) from None
    except OSError as exc:
        raise ImageError("%s: cannot read: %s" % (path, exc.strerror or exc)) from None
    if not data:
        raise ImageError("%s: empty file (0 bytes)" % path)
    if len(data) > max_bytes:
        raise ImageError("%s: file is over the limit of %d bytes" % (path, max_bytes))
    return data


def image_size(data: bytes) -> Optional[Tuple[int, int]]:
    """(width, height) from the header of a JPEG, PNG, GIF, BMP or WebP; None for other formats.

    Raises ImageError when the bytes claim a known format but its header is cut short.
    """
    try:
        if data[:2] == b"\xff\xd8":
            return _jpeg_size(data)
        if data[:8] == b"\x89PNG\r\n\x1a\n":
            width, height = struct.unpack(">II", data[16:24])
            return width, height
        if data[:6] in (b"GIF87a", b"GIF89a"):
            width, height = struct.unpack("<HH", data[6:10])
            return width, height
        if data[:2] == b"BM":
            return _bmp_size(data)
        if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
            return _webp_size(data)
    except struct.error:
        raise ImageError("truncated image header") from None
    return None


def _jpeg_size(data: bytes) -> Tuple[int, int]:
    pos, end = 2, len(data)
    while pos + 4 <= end:
        if data[pos] != 0xFF:
            raise ImageError("corrupt JPEG header")
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in (0x01, 0xD8) or 0xD0 <= marker <= 0xD7:  # markers without a length
            pos += 2
            continue
        (length,) = struct.unpack(">H", data[pos + 2 : pos + 4])
        if marker in _SOF_MARKERS:
            height, width = struct.unpack(">HH", data[pos + 5 : pos + 9])
            return width, height
        if marker in (0xD9, 0xDA) or length < 2:  # end of image / start of scan before any frame
            break
        pos += 2 + length
    raise ImageError("JPEG without a frame header")


def _bmp_size(data: bytes) -> Tuple[int, int]:
    (header,) = struct.unpack("<I", data[14:18])
    if header == 12:  # BITMAPCOREHEADER
        width, height = struct.unpack("<HH", data[18:22])
        return width, height
    width, height = struct.unpack("<ii", data[18:26])
    return width, abs(height)


def _webp_size(data: bytes) -> Optional[Tuple[int, int]]:
    chunk = data[12:16]
    if chunk == b"VP8X":
        w = int.from_bytes(data[24:27], "little") + 1
        h = int.from_bytes(data[27:30], "little") + 1
        return w, h
    if chunk == b"VP8L":
        (bits,) = struct.unpack("<I", data[21:25])
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8 ":
        width, height = struct.unpack("<HH", data[26:30])
        return width & 0x3FFF, height & 0x3FFF
    return None
