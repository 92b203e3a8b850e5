"""Decoder name -> source. Decoder modules (and their SDKs: cv2, av, sophon.sail) are imported only
when a stream asks for them, so a machine without sophon.sail never imports it.

`make_source` runs in the stream's reader thread right before `open()`, and first probes a network
camera (daemon.pipeline.sources.probe): one that accepts TCP but never answers fails within
PROBE_TIMEOUT_S instead of holding a decoder's process-wide open lock, whatever the decoder."""
import importlib
from typing import Callable, Dict, Tuple

from daemon.errors import SourceError
from daemon.pipeline.sources.base import DecoderUnavailable, Source, SourceSpec
from daemon.pipeline.sources.probe import PROBE_TIMEOUT_S, probe

DECODERS: Dict[str, Tuple[str, str]] = {
    "opencv": ("daemon.pipeline.sources.opencv_source", "OpenCVSource"),
    "pyav": ("daemon.pipeline.sources.pyav_source", "PyAVSource"),
    "sail": ("daemon.pipeline.sources.sail_decoder", "SailSource"),
}
"""decoder name -> (module, class). `auto` means opencv on this platform."""

AUTO = "opencv"


def source_class(decoder: str, stream: str = "?") -> Callable[[SourceSpec], Source]:
    """The class for `decoder`; DecoderUnavailable (one line) when it is unknown or not installed."""
    name = AUTO if decoder == "auto" else decoder
    if name not in DECODERS:
        raise DecoderUnavailable("stream %s: unknown decoder %r (auto, %s)" % (stream, decoder, ", ".join(sorted(DECODERS))))
    module_name, class_name = DECODERS[name]
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        missing = getattr(exc, "name", None)
        why = "not part of this installation" if missing in (None, module_name) else "%s not installed" % missing
        raise DecoderUnavailable("stream %s: decoder %s is not available (%s)" % (stream, name, why)) from None
    return getattr(module, class_name)  # type: ignore[no-any-return]


def make_source(spec: SourceSpec) -> Source:
    """A new, unopened source for `spec` (the supervisor opens it in the stream's thread), once a
    network camera answered the probe; SourceError (one redacted line) when it did not."""
    cls = source_class(spec.decoder, spec.name)
    if spec.is_live:
        try:
            probe(spec.url, min(PROBE_TIMEOUT_S, spec.open_timeout_s))
        except SourceError as exc:
            raise SourceError("stream %s: cannot open %s: %s" % (spec.name, spec.display_url,
                                                               spec.clean(str(exc)))) from None
    return cls(spec)
