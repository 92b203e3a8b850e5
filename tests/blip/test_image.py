"""load_image: one-line ImageError for every bad file; huge images refused from the header."""
import os
import struct
import subprocess
import sys

import cv2
import numpy as np
import pytest

from blip.errors import ImageError
from blip.image import image_size, load_image
from tests.privileges import ran_in_child

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _jpeg_bytes(width=16, height=12) -> bytes:
    ok, buf = cv2.imencode(".jpg", np.full((height, width, 3), 128, np.uint8))
    assert ok
    return buf.tobytes()


def _patch_jpeg_size(data: bytes, width: int, height: int) -> bytes:
    """Rewrite the SOF0 frame header's dimensions: a tiny file that claims a huge image."""
    pos = data.index(b"\xff\xc0")
    return data[: pos + 5] + struct.pack(">HH", height, width) + data[pos + 9 :]


def test_reads_jpeg_and_png(tmp_path):
    img = np.random.default_rng(0).integers(0, 256, (12, 16, 3), dtype=np.uint8)
    cv2.imwrite(str(tmp_path / "a.png"), img)
    out = load_image(str(tmp_path / "a.png"))
    assert out.dtype == np.uint8 and out.shape == (12, 16, 3)
    np.testing.assert_array_equal(out, img)
    (tmp_path / "b.jpg").write_bytes(_jpeg_bytes())
    assert load_image(str(tmp_path / "b.jpg")).shape == (12, 16, 3)


def test_gray_png_comes_back_bgr(tmp_path):
    cv2.imwrite(str(tmp_path / "g.png"), np.zeros((5, 6), np.uint8))
    assert load_image(str(tmp_path / "g.png")).shape == (5, 6, 3)


@pytest.mark.parametrize("fmt", [".jpg", ".png", ".bmp", ".webp"])
def test_header_sizes(fmt):
    ok, buf = cv2.imencode(fmt, np.zeros((21, 37, 3), np.uint8))
    assert ok
    assert image_size(buf.tobytes()) == (37, 21)


def test_huge_jpeg_refused_before_decoding(tmp_path):
    path = tmp_path / "huge.jpg"
    path.write_bytes(_patch_jpeg_size(_jpeg_bytes(), 20000, 20000))
    assert image_size(path.read_bytes()) == (20000, 20000)
    with pytest.raises(ImageError, match=r"huge\.jpg: 20000x20000 pixels is over the limit"):
        load_image(str(path))


def test_max_pixels_is_a_parameter(tmp_path):
    (tmp_path / "b.jpg").write_bytes(_jpeg_bytes(16, 12))
    with pytest.raises(ImageError, match="16x12 pixels is over the limit of 100"):
        load_image(str(tmp_path / "b.jpg"), max_pixels=100)


def test_bad_files(tmp_path):
    (tmp_path / "zero.jpg").write_bytes(b"")
    (tmp_path / "junk.jpg").write_bytes(b"this is not an image at all")
    (tmp_path / "cut.jpg").write_bytes(_jpeg_bytes()[:40])
    (tmp_path / "dir.jpg").mkdir()
    cases = {
        "missing.jpg": "no such file",
        "zero.jpg": "empty file",
        "junk.jpg": "not an image OpenCV can decode",
        "dir.jpg": "is a directory",
    }
    for name, expected in cases.items():
        with pytest.raises(ImageError) as info:
            load_image(str(tmp_path / name))
        assert name in str(info.value) and expected in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(ImageError, match=r"cut\.jpg: "):
        load_image(str(tmp_path / "cut.jpg"))


def test_unreadable_file(tmp_path, request):
    if ran_in_child(request):
        return
    path = tmp_path / "secret.jpg"
    path.write_bytes(_jpeg_bytes())
    path.chmod(0)
    with pytest.raises(ImageError, match="secret.jpg: permission denied"):
        load_image(str(path))


def test_import_cv2_sets_the_decoder_limit_first():
    code = "import os, blip.image as m; m.import_cv2(); print(os.environ['OPENCV_IO_MAX_IMAGE_PIXELS'])"
    env = {k: v for k, v in os.environ.items() if k != "OPENCV_IO_MAX_IMAGE_PIXELS"}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60, check=True, cwd=ROOT
    )
    assert int(out.stdout) == 64 * 1024 * 1024
