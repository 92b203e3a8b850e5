"""Calibration set for INT8 bmodels: frames of the cameras' own footage -> the vision graphs' input.

TPU-MLIR's `run_calibration.py` measures each activation's range on sample inputs. Our vision graphs
and the seed's take already-normalised float pixels (`pixel_values`), so a sample is an npz holding
that one array, preprocessed exactly as the runtime does it (`blip.preprocess.preprocess` with the
package's mean, std and filter, at the task's image size): ranges measured on anything else are
ranges of inputs the graph never sees. Frames are spread evenly over the clips given, so a long
quiet stretch does not fill the set with one scene.

Written under DIR (one folder per image size: the seed's VQA encoder takes 480 px, the rest 384):
  DIR/<size>/frame_0000.npz          {"pixel_values": float32 [1,3,size,size]}, the calibration set
  DIR/frames/<size>/frame_0000.jpg   the same pixels de-normalised, to look at
The JPEGs stay out of DIR/<size>: `run_calibration.py --dataset` collects files recursively and
refuses a mix of npz and images. `compile_bmodel.sh` passes `--data_list` with the npz files.

CLI: `python -m blip.export.calibration --package PKG --video CLIP [--video CLIP2 ...] --count N --out DIR`.
Files or URLs of files only: a live stream has no end to spread the frames over (record a clip).
"""
import argparse
import logging
import os
import sys
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np

from blip.errors import BlipError, ExportError
from blip.image import import_cv2
from blip.package import ModelPackage, Preprocess
from blip.preprocess import preprocess
from blip.redact import redact_url

log = logging.getLogger(__name__)

PathLike = Union[str, Path]
PIXEL_INPUT = "pixel_values"
"""Input name of every graph that takes an image: split `vision` and the seed's cap/itm/venc."""
PIXEL_ROLES = ("vision", "cap", "itm", "venc")
LIVE_SCHEMES = ("rtsp", "rtsps", "rtmp", "rtmps", "udp", "rtp", "srt", "tcp")


def _shown(video: str) -> str:
    """The video as printed: a URL's password and secret query values masked (the daemon's rule)."""
    return redact_url(video)


def vision_sizes(package: ModelPackage) -> List[int]:
    """The image sizes of the package's graphs that take pixels, smallest first."""
    sizes = {spec.image_size for spec in package.tasks.values() if any(r in spec.graphs for r in PIXEL_ROLES)}
    if not sizes:
        raise ExportError("package %s (%s): no vision graph (roles %s) to calibrate"
                          % (package.name, package.path, ", ".join(PIXEL_ROLES)))
    return sorted(sizes)


def spread(total: int, count: int) -> List[int]:
    """`count` distinct frame indices in [0, total), evenly spaced, each in the middle of its share."""
    if count <= 0:
        raise ExportError("--count must be positive, got %d" % count)
    if count > total:
        raise ExportError("the videos hold %d frames, fewer than --count %d" % (total, count))
    return [(2 * i + 1) * total // (2 * count) for i in range(count)]


def _open(video: str) -> Any:
    cv2 = import_cv2()
    scheme = video.split("://", 1)[0].lower() if "://" in video else ""
    if scheme in LIVE_SCHEMES:
        raise ExportError("video %s: a live stream has no end to spread frames over; record a clip first "
                          "(ffmpeg -i URL -t 120 -c copy clip.mp4)" % _shown(video))
    if not scheme and not os.path.isfile(video):
        raise ExportError("video %s: file not found" % video)
    cap = cv2.VideoCapture(video)
    if not cap.isOpened():
        cap.release()
        raise ExportError("video %s: OpenCV cannot open it (not a video, or a codec it lacks)" % _shown(video))
    return cap


def frame_count(video: str) -> int:
    """Frames in `video`: the container's count, or a grab-only pass where it has none."""
    cv2 = import_cv2()
    cap = _open(video)
    try:
        count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        if count <= 0:
            count = 0
            while cap.grab():
                count += 1
    finally:
        cap.release()
    if count <= 0:
        raise ExportError("video %s: no frame could be read" % _shown(video))
    return count


def read_frames(video: str, indices: Sequence[int]) -> Iterator[Tuple[int, np.ndarray]]:
    """(index, BGR frame) for the sorted `indices`: read in order, decoding only the frames kept
    (a seek lands on key frames and is not exact in every container)."""
    cap = _open(video)
    try:
        position = 0
        for index in indices:
            while position <= index:
                if not cap.grab():
                    raise ExportError("video %s: decoding stopped at frame %d, before frame %d "
                                      "(re-encode the clip)" % (_shown(video), position, index))
                position += 1
            ok, frame = cap.retrieve()
            if not ok or frame is None:
                raise ExportError("video %s: frame %d cannot be decoded" % (_shown(video), index))
            yield index, frame
    finally:
        cap.release()


def to_bgr_image(pixels: np.ndarray, settings: Preprocess) -> np.ndarray:
    """[1,3,S,S] normalised RGB -> SxSx3 BGR uint8: what the graph sees, as a picture."""
    rgb = pixels[0].transpose(1, 2, 0) * np.asarray(settings.std, np.float32) + np.asarray(settings.mean, np.float32)
    return np.ascontiguousarray(np.clip(np.rint(rgb * 255.0), 0, 255).astype(np.uint8)[:, :, ::-1])


def _plan(videos: Sequence[str], count: int) -> List[Tuple[str, List[int]]]:
    """Per video, the frames to take: `count` indices spread over all videos played end to end."""
    counts = [frame_count(v) for v in videos]
    chosen = spread(sum(counts), count)
    plan, start = [], 0
    for video, frames in zip(videos, counts):
        plan.append((video, [i - start for i in chosen if start <= i < start + frames]))
        start += frames
    return plan


def _prepare_out(out: Path) -> None:
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ExportError("output %s exists and is not an empty folder" % out)
    out.mkdir(parents=True, exist_ok=True)


def write_calibration_set(package_dir: PathLike, videos: Sequence[str], count: int, out: PathLike) -> Dict[int, List[Path]]:
    """Write `count` preprocessed frames per image size of the package under `out`; returns size -> npz files."""
    if not videos:
        raise ExportError("no video given")
    package = ModelPackage.load(str(package_dir), verify_checksums=False)  # only the manifest is read
    sizes = vision_sizes(package)
    plan = _plan(videos, count)
    out = Path(out)
    _prepare_out(out)
    cv2 = import_cv2()
    settings = package.preprocess
    written: Dict[int, List[Path]] = {size: [] for size in sizes}
    for size in sizes:
        (out / str(size)).mkdir()
        (out / "frames" / str(size)).mkdir(parents=True)
    n = 0
    for video, indices in plan:
        for index, frame in read_frames(video, indices):
            for size in sizes:
                pixels = preprocess(frame, size, settings.mean, settings.std, settings.interpolation)
                path = out / str(size) / ("frame_%04d.npz" % n)
                np.savez(str(path), **{PIXEL_INPUT: pixels})
                picture = out / "frames" / str(size) / ("frame_%04d.jpg" % n)
                if not cv2.imwrite(str(picture), to_bgr_image(pixels, settings)):
                    raise ExportError("%s: cannot write the JPEG" % picture)
                written[size].append(path)
            log.debug("frame %d of %s -> frame_%04d", index, _shown(video), n)
            n += 1
    for size in sizes:
        log.info("wrote %d samples of %s [1,3,%d,%d] to %s", len(written[size]), PIXEL_INPUT, size, size, out / str(size))
    return written


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m blip.export.calibration", description=__doc__.splitlines()[0])
    parser.add_argument("--package", required=True, help="model package whose vision graphs will be calibrated")
    parser.add_argument("--video", action="append", required=True, metavar="CLIP_OR_URL",
                        help="a clip from the cameras (repeat for several); frames are spread over all of them")
    parser.add_argument("--count", type=int, default=200, help="frames to take (TPU-MLIR suggests 100 to 1000)")
    parser.add_argument("--out", required=True, help="folder to create (absent or empty)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        write_calibration_set(args.package, args.video, args.count, args.out)
    except (BlipError, OSError) as exc:
        raise SystemExit("calibration: %s" % exc) from None
    return 0


if __name__ == "__main__":
    sys.exit(main())
