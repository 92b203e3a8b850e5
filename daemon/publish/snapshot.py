"""JPEG snapshots sent as the third part of an event message, small enough for a dashboard.

Bounded in bytes as well as in pixels: a busy 4K scene at quality 95 can encode to several
megabytes, and every subscriber's socket queue holds up to `send_hwm` of them. A JPEG over
`max_bytes` is encoded again at lower quality, then at a smaller size, until it fits.
"""
from typing import Optional

import cv2
import numpy as np

from blip.errors import ImageError

MIN_QUALITY = 30
"""Below this JPEG artefacts hide what a dashboard shows; halving the size is the better trade."""


def _encode(image_bgr: np.ndarray, quality: int) -> bytes:
    ok, buf = cv2.imencode(".jpg", image_bgr, [int(cv2.IMWRITE_JPEG_QUALITY), int(quality)])
    if not ok:
        raise ImageError("snapshot: JPEG encoding failed for a %dx%d image" % (image_bgr.shape[1], image_bgr.shape[0]))
    return buf.tobytes()


def _shrink(image_bgr: np.ndarray, max_side: int) -> np.ndarray:
    height, width = image_bgr.shape[:2]
    longest = max(height, width)
    if max_side <= 0 or longest <= max_side:
        return image_bgr
    scale = max_side / float(longest)
    size = (max(1, int(round(width * scale))), max(1, int(round(height * scale))))
    return cv2.resize(image_bgr, size, interpolation=cv2.INTER_AREA)


def encode_snapshot(image_bgr: np.ndarray, max_side: int, quality: int, max_bytes: Optional[int] = None) -> bytes:
    """BGR frame -> JPEG bytes, shrunk (INTER_AREA, aspect kept) so its longer side <= max_side,
    and (max_bytes) re-encoded at lower quality, then at half the size, until it is <= max_bytes."""
    if image_bgr is None or image_bgr.ndim not in (2, 3) or image_bgr.size == 0:
        raise ImageError("snapshot: not an image (shape %s)" % (getattr(image_bgr, "shape", None),))
    image_bgr = _shrink(image_bgr, max_side)
    jpeg = _encode(image_bgr, quality)
    while max_bytes is not None and len(jpeg) > max_bytes:
        if quality > MIN_QUALITY:
            quality = max(MIN_QUALITY, quality * 2 // 3)
        elif max(image_bgr.shape[:2]) > 16:
            image_bgr = _shrink(image_bgr, max(16, max(image_bgr.shape[:2]) // 2))
        else:
            raise ImageError("snapshot: cannot encode within %d bytes" % max_bytes)
        jpeg = _encode(image_bgr, quality)
    return jpeg
