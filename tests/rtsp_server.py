"""A real RTSP server for tests: gst-rtsp-server on 127.0.0.1, mounts given on the command line.

Run it with Debian's /usr/bin/python3 (the `gi` bindings are not in the venv):

    /usr/bin/python3 tests/rtsp_server.py --port 0 live=h264 cam265=h265 clip=file:/tmp/x.mp4

Mount kinds:
  h264         live test pattern (moving ball), H.264, shared by all clients
  h265         the same in H.265 (many real cameras send H.265)
  file:PATH    an H.264 mp4 played at its real rate from the start for each client; it ends with
               the file (make a long copy with tests.media.make_repeated to "loop" it)

Prints `READY <port>` on stdout once listening (port 0 = pick a free one), then serves until killed.
"""
import argparse
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402

LIVE_H264 = ("( videotestsrc is-live=true pattern=ball ! video/x-raw,width={w},height={h},framerate={fps}/1 "
             "! x264enc tune=zerolatency speed-preset=ultrafast key-int-max={fps} threads=1 "
             "! rtph264pay name=pay0 pt=96 config-interval=1 )")
LIVE_H265 = ("( videotestsrc is-live=true pattern=ball ! video/x-raw,width={w},height={h},framerate={fps}/1 "
             "! x265enc tune=zerolatency speed-preset=ultrafast key-int-max={fps} "
             "! h265parse ! rtph265pay name=pay0 pt=96 config-interval=1 )")
FILE_H264 = "( filesrc location=\"{path}\" ! qtdemux ! h264parse ! rtph264pay name=pay0 pt=96 config-interval=1 )"


def launch_for(kind: str, width: int, height: int, fps: int) -> "tuple":
    """(launch string, shared) for a mount kind."""
    if kind == "h264":
        return LIVE_H264.format(w=width, h=height, fps=fps), True
    if kind == "h265":
        return LIVE_H265.format(w=width, h=height, fps=fps), True
    if kind.startswith("file:"):
        return FILE_H264.format(path=kind[len("file:"):].replace('"', '\\"')), False
    raise SystemExit("unknown mount kind %r (h264, h265, file:PATH)" % kind)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--width", type=int, default=320)
    parser.add_argument("--height", type=int, default=240)
    parser.add_argument("--fps", type=int, default=15)
    parser.add_argument("mounts", nargs="+", help="NAME=KIND")
    args = parser.parse_args()

    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(args.port))
    mounts = server.get_mount_points()
    for spec in args.mounts:
        name, _, kind = spec.partition("=")
        launch, shared = launch_for(kind, args.width, args.height, args.fps)
        factory = GstRtspServer.RTSPMediaFactory()
        factory.set_launch(launch)
        factory.set_shared(shared)
        mounts.add_factory("/" + name, factory)
    if server.attach(None) == 0:
        print("FAILED cannot listen on port %d" % args.port, flush=True)
        return 1
    print("READY %d" % server.get_bound_port(), flush=True)
    loop = GLib.MainLoop()
    try:
        loop.run()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
