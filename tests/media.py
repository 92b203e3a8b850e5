"""Test media made on the spot with the ffmpeg CLI: short clips, a static clip, and broken files.

Clips are deterministic (lavfi test sources, fixed codec settings, no timestamps from the
clock) so tests can count frames. Every helper returns the path it wrote.
"""
import os
import random
import shutil
import subprocess
from pathlib import Path
from typing import List, Tuple, Union

PathLike = Union[str, "os.PathLike[str]"]

FFMPEG = shutil.which("ffmpeg") or "/usr/bin/ffmpeg"


def _run_ffmpeg(args: List[str], timeout_s: float = 60.0) -> None:
    cmd = [FFMPEG, "-hide_banner", "-loglevel", "error", "-nostdin", "-y"] + args
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout_s)
    if proc.returncode != 0:
        raise RuntimeError("ffmpeg failed (%d): %s" % (proc.returncode, proc.stderr.decode(errors="replace")[-2000:]))


def _encoder_args(codec: str, fps: int) -> List[str]:
    if codec == "libx264":
        # One thread and a fixed GOP make the output byte-identical from run to run.
        return ["-c:v", "libx264", "-preset", "ultrafast", "-g", str(fps), "-threads", "1",
                "-pix_fmt", "yuv420p", "-bf", "0"]
    if codec == "libx265":
        return ["-c:v", "libx265", "-preset", "ultrafast", "-x265-params", "log-level=error:pools=1",
                "-pix_fmt", "yuv420p", "-tag:v", "hvc1"]
    if codec == "mjpeg":
        return ["-c:v", "mjpeg", "-q:v", "5", "-pix_fmt", "yuvj420p"]
    return ["-c:v", codec]


def make_clip(path: PathLike, seconds: float, fps: int = 25, size: Tuple[int, int] = (320, 240),
              pattern: str = "testsrc", codec: str = "libx264") -> Path:
    """A moving test-pattern clip: `pattern` is a lavfi source (testsrc, testsrc2, smptebars, mandelbrot...)."""
    path = Path(path)
    src = "%s=size=%dx%d:rate=%d:duration=%s" % (pattern, size[0], size[1], fps, seconds)
    _run_ffmpeg(["-f", "lavfi", "-i", src] + _encoder_args(codec, fps) + ["-an", str(path)])
    return path


def make_static_clip(path: PathLike, seconds: float, fps: int = 25, size: Tuple[int, int] = (320, 240),
                     color: str = "0x336699", codec: str = "libx264") -> Path:
    """A clip whose frames are all the same solid colour: the scene-change gate must drop them."""
    path = Path(path)
    src = "color=c=%s:size=%dx%d:rate=%d:duration=%s" % (color, size[0], size[1], fps, seconds)
    _run_ffmpeg(["-f", "lavfi", "-i", src] + _encoder_args(codec, fps) + ["-an", str(path)])
    return path


def make_zero_length(path: PathLike) -> Path:
    path = Path(path)
    path.write_bytes(b"")
    return path


def make_random_bytes(path: PathLike, size: int = 64 * 1024, seed: int = 1) -> Path:
    path = Path(path)
    path.write_bytes(random.Random(seed).getrandbits(8 * size).to_bytes(size, "little"))
    return path


def make_header_garbage(path: PathLike, seed: int = 2) -> Path:
    """An mp4 `ftyp` box followed by random bytes: looks like a video to a sniffer, is not one."""
    path = Path(path)
    ftyp = b"\x00\x00\x00\x20ftypisom\x00\x00\x02\x00isomiso2avc1mp41"
    garbage = random.Random(seed).getrandbits(8 * 8192).to_bytes(8192, "little")
    path.write_bytes(ftyp + garbage)
    return path


def make_truncated(source: PathLike, path: PathLike, keep: float = 0.5) -> Path:
    """The first `keep` fraction of `source`: for an mp4 made with +faststart the index survives."""
    data = Path(source).read_bytes()
    path = Path(path)
    path.write_bytes(data[: max(1, int(len(data) * keep))])
    return path


def make_faststart_clip(path: PathLike, seconds: float, fps: int = 25, size: Tuple[int, int] = (320, 240)) -> Path:
    """A clip with its moov box first, so a truncated copy still opens and decodes up to the cut."""
    path = Path(path)
    src = "testsrc=size=%dx%d:rate=%d:duration=%s" % (size[0], size[1], fps, seconds)
    _run_ffmpeg(["-f", "lavfi", "-i", src] + _encoder_args("libx264", fps)
                + ["-movflags", "+faststart", "-an", str(path)])
    return path


def make_repeated(source: PathLike, path: PathLike, times: int) -> Path:
    """`source` played `times` times in one file (stream copy, timestamps continue): what the RTSP
    test server streams when a test wants a file that "loops" for a while."""
    path = Path(path)
    _run_ffmpeg(["-stream_loop", str(max(0, times - 1)), "-i", str(source), "-c", "copy", "-an", str(path)])
    return path


def make_text_file(path: PathLike) -> Path:
    path = Path(path)
    path.write_text("this is not a video\n" * 100)
    return path


def make_concatenated(path: PathLike, seconds: float, parts: int = 2, fps: int = 25,
                      size: Tuple[int, int] = (160, 120)) -> Path:
    """`parts` MPEG-TS recordings of `seconds` each, joined byte for byte (`cat a.ts b.ts`): the
    timestamps start over at every join, as in concatenated camera recordings."""
    path = Path(path)
    chunks = []
    for index in range(parts):
        part = path.with_name("%s.part%d.ts" % (path.stem, index))
        src = "testsrc=size=%dx%d:rate=%d:duration=%s" % (size[0], size[1], fps, seconds)
        _run_ffmpeg(["-f", "lavfi", "-i", src] + _encoder_args("libx264", fps) + ["-an", "-f", "mpegts", str(part)])
        chunks.append(part.read_bytes())
        part.unlink()
    path.write_bytes(b"".join(chunks))
    return path


def make_corrupted(source: PathLike, path: PathLike, start: float = 0.5, length: float = 0.125, seed: int = 3) -> Path:
    """`source` with `length` of its bytes, from `start` (fractions of its size), overwritten with
    random bytes: a damaged region mid-file whose index (moov) stays intact."""
    data = bytearray(Path(source).read_bytes())
    first, count = int(len(data) * start), int(len(data) * length)
    data[first:first + count] = random.Random(seed).getrandbits(8 * count).to_bytes(count, "little")
    path = Path(path)
    path.write_bytes(bytes(data))
    return path
