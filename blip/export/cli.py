"""`blipd export` / `python -m blip.export`: checkpoint folders -> model package."""
import argparse
import logging
import sys
from typing import List, Optional

from blip.errors import BlipError
from blip.graphs import VISION_ATTENTION_FORMS

log = logging.getLogger(__name__)


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Add the export options to `parser` (the coordinator mounts it as `blipd export`)."""
    parser.add_argument("--caption", metavar="DIR", help="BlipForConditionalGeneration checkpoint folder")
    parser.add_argument("--match", metavar="DIR", help="BlipForImageTextRetrieval checkpoint folder")
    parser.add_argument("--answer", metavar="DIR", help="BlipForQuestionAnswering checkpoint folder")
    parser.add_argument("--out", metavar="DIR", required=True, help="package folder to create (absent or empty)")
    parser.add_argument("--name", help="package name shown in events (default: the folder name)")
    parser.add_argument("--layout", default="split", choices=["split", "seed"], help="split (ours, KV-cached decoders) or seed (the sophon-demo graphs, for TPU-MLIR)")
    parser.add_argument(
        "--vision-attention", default="hf", choices=list(VISION_ATTENTION_FORMS),
        help="how the vision graph writes attention: hf (portable, default), sdpa, or fused (ONNX Runtime's "
             "MultiHeadAttention op: ONNX Runtime only, not for TPU-MLIR); docs/model-package.md",
    )
    parser.add_argument(
        "--no-verify", dest="verify", action="store_false", help="skip checking each graph against PyTorch"
    )


def run(args: argparse.Namespace) -> int:
    """Export; one error line and exit status 1 on a refused checkpoint or a failed check."""
    from blip.export.api import export_package

    command = getattr(args, "export_command_line", None) or " ".join(["blipd"] + sys.argv[1:])
    try:
        path = export_package(
            args.out,
            caption=args.caption,
            match=args.match,
            answer=args.answer,
            name=args.name,
            verify=args.verify,
            layout=args.layout,
            command=command,
            vision_attention=args.vision_attention,
        )
    except BlipError as exc:
        log.error("%s", exc)
        return 1
    log.info("wrote %s", path)
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m blip.export", description=__doc__)
    configure_parser(parser)
    args = parser.parse_args(argv)
    args.export_command_line = " ".join(["python -m blip.export"] + (sys.argv[1:] if argv is None else list(argv)))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return run(args)
