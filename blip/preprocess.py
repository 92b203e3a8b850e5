"""BGR uint8 frame -> normalized NCHW float32, as the seed does it (reference/seed-blip.md §4).

Resize first, then swap channels and normalise on the small image: a 1080p frame costs one cv2
resize plus ~0.4 M multiply-adds, instead of colour-converting 2 M pixels first. Cubic resizing
works per channel, so the order does not change the result.
"""
from typing import Sequence

import numpy as np

from blip.errors import ImageError
from blip.image import import_cv2

_INTERPOLATIONS = ("bicubic", "bilinear")


def to_bgr(frame: np.ndarray) -> np.ndarray:
    """Check `frame` and return it as BGR uint8 HxWx3 (gray and BGRA accepted)."""
    if not isinstance(frame, np.ndarray):
        raise ImageError("frame must be a numpy array, got %s" % type(frame).__name__)
    if frame.dtype != np.uint8:
        raise ImageError("frame must be uint8, got %s" % frame.dtype)
    if frame.ndim not in (2, 3) or frame.size == 0:
        raise ImageError("frame must be a non-empty HxW or HxWxC image, got shape %s" % (frame.shape,))
    channels = 1 if frame.ndim == 2 else frame.shape[2]
    if channels == 3:
        return frame
    if channels == 1:
        gray = frame if frame.ndim == 2 else frame[:, :, 0]
        return np.repeat(gray[:, :, None], 3, axis=2)
    if channels == 4:
        return frame[:, :, :3]
    raise ImageError("frame must have 1, 3 or 4 channels, got %d" % channels)


def preprocess(
    frame: np.ndarray,
    size: int,
    mean: Sequence[float],
    std: Sequence[float],
    interpolation: str = "bicubic",
) -> np.ndarray:
    """BGR frame -> float32 [1,3,size,size]: resize (stretch, no crop), RGB, /255, (x-mean)/std."""
    if interpolation not in _INTERPOLATIONS:
        raise ImageError("interpolation %r is not one of %s" % (interpolation, ", ".join(_INTERPOLATIONS)))
    if frame is None:
        raise ImageError("frame is None")
    bgr = to_bgr(frame)
    cv2 = import_cv2()
    flag = cv2.INTER_CUBIC if interpolation == "bicubic" else cv2.INTER_LINEAR
    if bgr.shape[0] == size and bgr.shape[1] == size:
        resized = bgr
    else:
        resized = cv2.resize(np.ascontiguousarray(bgr), (size, size), interpolation=flag)
    out = np.empty((1, 3, size, size), dtype=np.float32)
    for rgb_channel in range(3):
        # (x/255 - m)/s == x * (1/(255 s)) - m/s; the BGR->RGB swap is the channel index.
        scale = np.float32(1.0 / (255.0 * float(std[rgb_channel])))
        offset = np.float32(-float(mean[rgb_channel]) / float(std[rgb_channel]))
        plane = out[0, rgb_channel]
        np.multiply(resized[:, :, 2 - rgb_channel], scale, out=plane, dtype=np.float32)
        plane += offset
    return out
