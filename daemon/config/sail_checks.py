"""Config checks for the SOPHON parts, which sail's own sources decide (reference/sophon-sail.md).

- `decoder: sail` applies its read timeout (`stimeout`, `rtsp_transport`) only to URLs that start
  with lowercase `rtsp:` (cvwrapper.cpp compares the first five characters). Any other network URL
  (`rtsps://`, `http(s)://`) gets no timeout at all: a read from a camera that stops answering
  blocks forever and the stall watchdog never fires. Such URLs are refused for `decoder: sail`;
  `RTSP://` (a scheme in capitals) is only a spelling and is lower-cased before sail sees it.
- Each sail worker runs on its own TPU core (`core_list=[i]`); no SOPHON chip has more than
  `blip.runtime.sail.MAX_CORES` (BM1688: 2), and a launch on a missing core only logs inside bmrt while stale
  outputs come back. The chip itself is known only on the box: preflight and the runtime check
  the exact count there.
"""
import re
from typing import Any, List, Optional, Tuple

from daemon.config.yaml_loader import KeyPath

Problem = Tuple[KeyPath, str]

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")


def sail_url(url: str) -> Tuple[str, Optional[str]]:
    """(the URL as sail must be given it, why sail cannot time it out or None). Files pass as they
    are; an upper-case `rtsp` scheme is lower-cased; rtsps and http(s) come with a reason."""
    match = _SCHEME.match(url)
    if match is None or match.group(1).lower() == "file":
        return url, None
    scheme = match.group(1).lower()
    if scheme == "rtsp":
        return "rtsp" + url[len(match.group(1)):], None
    return url, ("decoder sail has no read timeout for %s:// URLs (sail applies it to rtsp:// only), so a "
                 "camera that stops answering would block the stream forever: use decoder opencv or pyav" % scheme)


def sail_checks(settings: Any) -> List[Problem]:
    """URLs `decoder: sail` cannot time out; more sail workers than any chip has cores."""
    problems: List[Problem] = []
    for index, stream in enumerate(settings.streams):
        if stream.decoder == "sail":
            _, why = sail_url(stream.secret_url())
            if why:
                problems.append((("streams", index, "url"), why))
    model = settings.model
    if model.backend != "sail":
        return problems
    from blip.runtime.sail import MAX_CORES  # numpy comes with it: only for sail configs

    if model.workers > MAX_CORES:
        problems.append((("model", "workers"), "backend sail runs one worker per TPU core and no SOPHON chip has "
                         "more than %d (BM1688; BM1684/BM1684X have 1): set workers to at most %d" % (MAX_CORES, MAX_CORES)))
    return problems
