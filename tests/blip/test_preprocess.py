"""Preprocessing equals the seed's formula computed plainly: BGR->RGB, cv2 bicubic resize, /255,
(x - mean)/std, NCHW."""
import cv2
import numpy as np
import pytest

from blip.errors import ImageError
from blip.preprocess import preprocess
from tests.blip.tiny import MEAN, STD


def _reference(bgr: np.ndarray, size: int, flag=cv2.INTER_CUBIC) -> np.ndarray:
    rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    resized = cv2.resize(rgb, (size, size), interpolation=flag).astype(np.float64) / 255.0
    normed = (resized - np.array(MEAN)) / np.array(STD)
    return normed.transpose(2, 0, 1)[None].astype(np.float32)


@pytest.fixture
def frame() -> np.ndarray:
    return np.random.default_rng(3).integers(0, 256, (72, 128, 3), dtype=np.uint8)


def test_matches_the_formula(frame):
    out = preprocess(frame, 32, MEAN, STD)
    assert out.shape == (1, 3, 32, 32) and out.dtype == np.float32 and out.flags.c_contiguous
    np.testing.assert_allclose(out, _reference(frame, 32), atol=1e-5)


def test_bilinear_and_same_size(frame):
    np.testing.assert_allclose(
        preprocess(frame, 20, MEAN, STD, "bilinear"), _reference(frame, 20, cv2.INTER_LINEAR), atol=1e-5
    )
    square = frame[:64, :64]  # a non-contiguous view already at the target size
    want = _reference(np.ascontiguousarray(square), 64)
    np.testing.assert_allclose(preprocess(square, 64, MEAN, STD), want, atol=1e-5)


def test_channel_order_is_rgb():
    blue = np.zeros((4, 4, 3), np.uint8)
    blue[:, :, 0] = 255  # BGR: blue
    out = preprocess(blue, 4, MEAN, STD)
    assert out[0, 2].min() > 1.5 and out[0, 0].max() < -1.5  # RGB channel 2 is bright, 0 dark


@pytest.mark.parametrize("shape", [(30, 40), (30, 40, 1)])
def test_gray_is_replicated(shape):
    gray = np.random.default_rng(4).integers(0, 256, shape, dtype=np.uint8)
    bgr = cv2.cvtColor(gray.reshape(30, 40), cv2.COLOR_GRAY2BGR)
    np.testing.assert_allclose(preprocess(gray, 16, MEAN, STD), _reference(bgr, 16), atol=1e-5)


def test_bgra_drops_alpha(frame):
    bgra = cv2.cvtColor(frame, cv2.COLOR_BGR2BGRA)
    bgra[:, :, 3] = 7
    np.testing.assert_allclose(preprocess(bgra, 16, MEAN, STD), _reference(frame, 16), atol=1e-5)


@pytest.mark.parametrize(
    "bad, message",
    [
        (None, "frame is None"),
        (np.zeros((0, 10, 3), np.uint8), "non-empty"),
        (np.zeros((10, 10, 3), np.float32), "must be uint8"),
        (np.zeros((10, 10, 2), np.uint8), "1, 3 or 4 channels"),
        (np.zeros((2, 10, 10, 3), np.uint8), "non-empty HxW"),
        ([[1, 2]], "numpy array"),
    ],
)
def test_rejects_bad_frames(bad, message):
    with pytest.raises(ImageError, match=message):
        preprocess(bad, 8, MEAN, STD)


def test_rejects_unknown_interpolation(frame):
    with pytest.raises(ImageError, match="interpolation 'nearest'"):
        preprocess(frame, 8, MEAN, STD, "nearest")
