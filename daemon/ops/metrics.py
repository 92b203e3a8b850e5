"""Prometheus metrics: per-stream counters read from StreamCounters at scrape time, inference latency.

Reading the counters when scraped (a custom collector) keeps one source of truth: the numbers
Prometheus sees are the ones stats events carry. Everything hangs off the Metrics object's own
registry, so several instances (tests, reloads) never collide.
"""
import logging
import socket
import threading
from socketserver import ThreadingMixIn
from typing import Callable, Dict, Iterator, Optional, Tuple
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, Histogram, make_wsgi_app
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from daemon.counters import DROP_REASONS, TASK_FAILURES, StreamCounters
from daemon.errors import MetricsError

from daemon.states import STREAM_STATES

log = logging.getLogger(__name__)

REQUEST_TIMEOUT_S = 10.0
"""A scrape connection that sends nothing for this long is closed: each one holds a thread."""

_COUNTERS = (  # StreamCounters name -> (metric name without _total, help)
    ("decoded", "blipd_frames_decoded", "Frames decoded"),
    ("sampled", "blipd_frames_sampled", "Frames kept by the sampler"),
    ("inferred", "blipd_frames_inferred", "Frames inferred"),
    ("failed", "blipd_frames_failed", "Frames whose inference failed"),
    ("published", "blipd_events_published", "Events sent on the publishing socket"),
    ("publish_dropped", "blipd_events_publish_dropped", "Events lost before the socket"),
    ("subscriber_overflows", "blipd_subscriber_overflows",
     "Sends that found a subscriber's queue full (that subscriber misses events until it catches up)"),
    ("reconnects", "blipd_stream_reconnects", "Reconnect attempts"),
    ("pts_discontinuities", "blipd_pts_discontinuities",
     "Times a file's timestamps went back or leapt ahead (a new segment of the sampling grid began)"),
    ("undecodable", "blipd_undecodable",
     "Damaged packets or frame positions a decoder skipped to go on with the rest of a file"),
)


class Metrics:
    """The daemon's metrics. Streams are added with watch() and removed with unwatch() on reload."""

    def __init__(self, registry: Optional[CollectorRegistry] = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self._lock = threading.Lock()
        self._streams: Dict[str, Tuple[StreamCounters, Optional[Callable[[], int]]]] = {}
        self._states: Dict[str, str] = {}
        self.inference_seconds = Histogram(
            "blipd_inference_seconds",
            "Time of one inference call on one frame, labelled by the tasks it ran together "
            "(caption, match, answer or a combination such as caption+match)", ["task"],
            registry=self.registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0))
        self.registry.register(_StreamCollector(self))

    def watch(self, counters: StreamCounters, queue_depth: Optional[Callable[[], int]] = None) -> None:
        """Expose `counters` (and the stream's queue depth, read at scrape time)."""
        with self._lock:
            self._streams[counters.stream] = (counters, queue_depth)
            self._states.setdefault(counters.stream, "starting")

    def unwatch(self, stream: str) -> None:
        with self._lock:
            self._streams.pop(stream, None)
            self._states.pop(stream, None)

    def set_state(self, stream: str, state: str) -> None:
        """The stream's connection state (a `stream` event's state)."""
        with self._lock:
            self._states[stream] = state

    def observe_inference(self, task: str, seconds: float) -> None:
        """`task`: the tasks of one `Engine.infer` call joined by '+' (the worker's label)."""
        self.inference_seconds.labels(task=task).observe(seconds)

    def streams(self) -> Dict[str, Tuple[StreamCounters, Optional[Callable[[], int]], str]]:
        """A copy of what is watched, for the collector."""
        with self._lock:
            return {name: (c, q, self._states.get(name, "starting"))
                    for name, (c, q) in self._streams.items()}

    def serve(self, host: str, port: int) -> Optional["MetricsServer"]:
        """Serve /metrics over HTTP; port 0 = disabled (returns None)."""
        if port == 0:
            return None
        return MetricsServer(self.registry, host, port)

    @staticmethod
    def shutdown(server: Optional["MetricsServer"]) -> None:
        if server is not None:
            server.close()


class _StreamCollector:
    """Builds the per-stream families from StreamCounters snapshots when Prometheus scrapes."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterator[Metric]:
        families = {key: CounterMetricFamily(name, doc, labels=["stream"]) for key, name, doc in _COUNTERS}
        dropped = CounterMetricFamily("blipd_frames_dropped", "Frames dropped, by reason",
                                      labels=["stream", "reason"])
        task_failed = CounterMetricFamily("blipd_task_failures", "Inference calls of one task that failed",
                                          labels=["stream", "task"])
        depth = GaugeMetricFamily("blipd_queue_depth", "Frames waiting for a worker", labels=["stream"])
        state = GaugeMetricFamily("blipd_stream_state", "1 for the stream's current state",
                                  labels=["stream", "state"])
        for stream, (counters, queue_depth, current) in sorted(self._metrics.streams().items()):
            snap = counters.snapshot()
            for key, family in families.items():
                family.add_metric([stream], float(snap.get(key, 0)))  # type: ignore
            drops = snap["dropped"]
            for reason in DROP_REASONS:
                dropped.add_metric([stream, reason], float(drops.get(reason, 0)))  # type: ignore
            for key in TASK_FAILURES:
                task_failed.add_metric([stream, key[len("failed_"):]], float(snap.get(key, 0)))  # type: ignore
            if queue_depth is not None:
                depth.add_metric([stream], float(_safe_depth(stream, queue_depth)))
            for name in STREAM_STATES:
                state.add_metric([stream, name], 1.0 if name == current else 0.0)
        yield from families.values()
        yield dropped
        yield task_failed
        yield depth
        yield state


def _safe_depth(stream: str, queue_depth: Callable[[], int]) -> int:
    try:
        return queue_depth()
    except Exception:  # a scrape must not fail because one stream is being torn down
        log.debug("stream %s: queue depth unavailable", stream, exc_info=True)
        return 0


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        """A client that timed out or hung up is not worth a traceback on stderr (the default)."""
        log.debug("metrics: request from %s failed", client_address, exc_info=True)


class _QuietHandler(WSGIRequestHandler):
    def setup(self) -> None:
        """A read timeout on the connection: without one an idle client holds its thread forever."""
        self.timeout = REQUEST_TIMEOUT_S
        super().setup()

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib signature
        """Scrapes every few seconds would flood stderr."""


class MetricsServer:
    """/metrics over HTTP in a daemon thread; `port` is the bound port; close() stops it."""

    def __init__(self, registry: CollectorRegistry, host: str, port: int) -> None:
        server_class = _ThreadingServer
        if ":" in host:
            server_class = type("_ThreadingServer6", (_ThreadingServer,), {"address_family": socket.AF_INET6})
        try:
            self._httpd = make_server(host, port, make_wsgi_app(registry), server_class=server_class,
                                      handler_class=_QuietHandler)
        except OSError as exc:
            raise MetricsError("metrics.port %d (host %s): %s" % (port, host, exc.strerror or exc)) from None
        self.port = int(self._httpd.server_port)
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.5},
                                        name="metrics-http", daemon=True)
        self._thread.start()
        log.info("metrics on http://%s:%d/metrics", host, self.port)

    def close(self, timeout: float = 5.0) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout)
