"""JPEG snapshots sent as the third part of an event message, small enough for a dashboard."""
import cv2
import numpy as np

from blip.errors import ImageError


def encode_snapshot(image_bgr: np.ndarray, max_side: int, quality: int) -> bytes:
    """BGR frame -> JPEG bytes, shrunk (INTER_AREA, aspect kept) so its longer side <= max_side."""
    if image_bgr is None or image_bgr.ndim not in (2, 3) or image_bgr.size == 0:
        raise ImageError("snapshot: not an image (shape %s)" % (getattr(image_bgr, "shape", None),))
    height, width = image_bgr.shape[:2]
    longest = max(height, width)
    if max_side > 0 and longest > max_side:
        scale = max_side / float(longest)
        size = (max(1, int(round(width * scale))), max(1, int(round(height * scale))))
        image_bgr = cv2.resize(image_bgr, size, interpolation=cv2.INTER_AREA)
    ok, buf = cv2.imencode(".jpg", image_bgr, [int(cv2.IMWRITE_JPEG_QUALITY), int(quality)])
    if not ok:
        raise ImageError("snapshot: JPEG encoding failed for a %dx%d image" % (width, height))
    return buf.tobytes()
