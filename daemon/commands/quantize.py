"""`blipd quantize PACKAGE --out DIR`: an int8 copy of a split package, each graph measured (blip.export.quantize)."""
import argparse
import logging
import sys

HELP = "write an int8 copy of a split model package (ONNX Runtime quantization, each graph measured)"
EXIT_OK, EXIT_FAIL, EXIT_USAGE = 0, 1, 2

log = logging.getLogger(__name__)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("package", metavar="PACKAGE", help="split-layout float package to quantize")
    parser.add_argument("--out", metavar="DIR", required=True, help="package folder to create (absent or empty)")
    parser.add_argument("--calibration", metavar="FRAMES", help="npz with pixel_values [N,3,S,S] (N >= 32), or a "
                        "folder from `python -m blip.export.calibration`; default: synthetic frames")
    parser.add_argument("--parts", default="vision,text", help="graphs to try in int8: vision, text (text = the "
                        "text encoder, question encoder and decoders); default vision,text")
    parser.add_argument("--threads", type=int, default=0, help="ONNX Runtime threads for the measurements "
                        "(default 0: one per core, as the daemon)")


def run(args: argparse.Namespace) -> int:
    """Quantize; one error line and exit 2 on bad input (package, calibration), 1 on a failure."""
    from blip.errors import BlipError, ImageError, PackageError

    try:
        import onnx  # noqa: F401  (onnxruntime's quantizer edits graphs with it)
        import onnxruntime.quantization  # noqa: F401
    except ImportError as exc:
        sys.stderr.write("blipd: quantize needs onnxruntime and onnx (pip install 'onnx>=1.14'): %s\n" % exc)
        return EXIT_FAIL
    from blip.export.quantize import parse_parts, quantize_package

    _quiet_quantizer()
    command = " ".join(["blipd"] + sys.argv[1:])
    try:
        parts = parse_parts(args.parts)
        result = quantize_package(args.package, args.out, calibration=args.calibration, parts=parts,
                                  threads=args.threads or None, command=command)
    except (PackageError, ImageError) as exc:
        sys.stderr.write("blipd: %s\n" % str(exc).splitlines()[0])
        return EXIT_USAGE
    except BlipError as exc:
        sys.stderr.write("blipd: %s\n" % str(exc).splitlines()[0])
        return EXIT_FAIL
    for line in result.table():
        sys.stdout.write(line + "\n")
    sys.stdout.write("wrote %s\n" % result.path)
    return EXIT_OK


def _quiet_quantizer() -> None:
    """onnxruntime's quantizer logs every skipped node at INFO on the root logger: keep ours only."""
    root = logging.getLogger()
    if not root.handlers:
        logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    root.setLevel(logging.WARNING)
    logging.getLogger("blip").setLevel(logging.INFO)
