"""Fixtures of the hardening tests: a caption-only package, broken media, a long clip."""
import os
import shutil
import struct
import zlib
from pathlib import Path
from typing import Dict

import pytest
import yaml

from tests import media


@pytest.fixture(scope="session")
def caption_only_package(tiny_package: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny package with only its caption task (a config asking a question must be refused)."""
    folder = tmp_path_factory.mktemp("caption-only") / "package"
    shutil.copytree(str(tiny_package), str(folder))
    manifest = yaml.safe_load((folder / "manifest.yaml").read_text())
    manifest["tasks"] = {"caption": manifest["tasks"]["caption"]}
    (folder / "manifest.yaml").write_text(yaml.safe_dump(manifest, sort_keys=False))
    for task in ("match", "answer"):
        shutil.rmtree(str(folder / task), ignore_errors=True)
    return folder


def huge_png(path: Path, width: int, height: int) -> Path:
    """A valid grey PNG of width x height made of zeros (400 MB of pixels, ~0.4 MB on disk)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    packer = zlib.compressobj(6)
    rows = bytes((width + 1) * 500)  # filter byte + pixels, 500 rows at a time
    body = [packer.compress(rows) for _ in range(height // 500)]
    body.append(packer.compress(bytes((width + 1) * (height % 500))))
    body.append(packer.flush())
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", b"".join(body))
                     + chunk(b"IEND", b""))
    return path


@pytest.fixture(scope="session")
def bad_media(tmp_path_factory: pytest.TempPathFactory) -> Dict[str, Path]:
    """Files that exist but are no usable video: name -> path."""
    root = tmp_path_factory.mktemp("bad-media")
    whole = media.make_faststart_clip(root / "whole.mp4", 2, fps=25)
    files = {
        "zero": media.make_zero_length(root / "zero.mp4"),
        "random": media.make_random_bytes(root / "random.mp4"),
        "header": media.make_header_garbage(root / "header.mp4"),
        "truncated": media.make_truncated(whole, root / "truncated.mp4", keep=0.5),
        "text": media.make_text_file(root / "notes.txt"),
        "huge": huge_png(root / "huge.png", 20000, 20000),
    }
    locked = media.make_clip(root / "locked.mp4", 1, fps=10)
    os.chmod(str(locked), 0)  # a root test runs its daemon under tests/privileges.py's prefix
    files["no_permission"] = locked
    return files


@pytest.fixture(scope="session")
def long_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """90 s of moving test pattern (a 3 s clip repeated): a file that plays without reopening
    during a test, so it never waits on OpenCV's global open lock."""
    root = tmp_path_factory.mktemp("long")
    short = media.make_clip(root / "short.mp4", 3, fps=25)
    return media.make_repeated(short, root / "long.mp4", 30)


@pytest.fixture(scope="session")
def fast_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """3 s of moving test pattern at 100 fps: four of them offer a tiny model far more frames than
    it can take."""
    return media.make_clip(tmp_path_factory.mktemp("fast") / "fast.mp4", 3, fps=100)
