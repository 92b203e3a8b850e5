"""Wires the daemon together and runs it: start, reload (SIGHUP), stop (SIGTERM).

Threads: one reader per stream (supervisor), N workers (one engine each), one publisher, the
metrics HTTP server; the main thread handles signals, sd_notify, stats and reloads. `stop()`
joins in reverse order of `start()`: readers first (no new frames), then workers (the frame in
flight is finished and published), then the publisher (flushes), all within STOP_BUDGET_S.
"""
import functools
import logging
import signal
import threading
import time
import uuid
from typing import Any, List, Optional

from blip.errors import BlipError
from daemon.config.config import Settings, check_tasks, diff_streams, load_config
from daemon.errors import ConfigError, DaemonError
from daemon.ops.logsetup import setup_logging
from daemon.pipeline.streams import StreamSet
from daemon.pipeline.worker import Worker

log = logging.getLogger(__name__)

WEDGED_AFTER_S = 60.0
"""A frame waiting while no inference finished for this long stops the systemd watchdog pings."""
STOP_BUDGET_S = 8.0
"""systemd's TimeoutStopSec is longer; the whole stop stays under 10 s."""
TICK_S = 0.5


def load_package(settings: Settings) -> Any:
    """The config's model package (blip.package.ModelPackage), checked to have every task the
    streams ask for; ConfigError `FILE:LINE: model.package: ...` otherwise. Shared by `check`,
    start and reload so all three judge a package the same way."""
    from blip.package import ModelPackage

    try:
        package = ModelPackage.load(str(settings.model.package))
    except BlipError as exc:
        raise ConfigError(settings.error_line(("model", "package"), str(exc).splitlines()[0])) from None
    check_tasks(settings, set(package.tasks))
    return package


class Service:
    """The daemon: build with a validated config, then `run()` until a stop signal."""

    def __init__(self, settings: Settings, engine_factory=None) -> None:  # type: ignore[no-untyped-def]
        from daemon.pipeline.emit import Emitter
        from daemon.ops.health import Metrics, Notifier, ProgressMonitor
        from daemon.publish.publisher import Publisher
        from daemon.pipeline.scheduler import Scheduler

        self.settings = settings
        self.boot = uuid.uuid4().hex[:12]
        self.package = load_package(settings)
        self.tasks = tuple(sorted(settings.tasks_needed())) or ("caption",)
        self._engine_factory = engine_factory
        self.notifier = Notifier()
        self.metrics = Metrics()
        self.progress = ProgressMonitor(stall_after_s=WEDGED_AFTER_S)
        self.scheduler = Scheduler(self._counters_for)
        self.publisher = Publisher(
            bind=settings.publish.bind,
            boot=self.boot,
            model=self.package.name,
            counters_for=self._counters_for,
            send_hwm=settings.publish.send_hwm,
            linger_ms=settings.publish.linger_ms,
            queue_size=settings.publish.queue_size,
            curve=settings.publish.curve,
            source=settings.name,
        )
        self.emitter = Emitter(self.publisher, settings.publish)
        self.streams = StreamSet(self.scheduler, self.publisher, self.emitter, self.metrics, device=settings.model.device,
                                 pixel_package=self.package if settings.model.preprocess == "tpu" else None)
        self.workers: List[Worker] = []
        self._stop = threading.Event()
        self._reload = threading.Event()
        self._metrics_server = None  # type: Optional[object]
        self._last_stats = time.monotonic()

    def _counters_for(self, name: str):  # type: ignore[no-untyped-def]
        return self.streams.counters_for(name)

    def _default_engine(self, worker: int) -> object:
        """Called in the worker's own thread: one runtime and engine per worker. On SOPHON with
        several workers, worker i runs on TPU core i (BM1688 has two; single-core chips ignore it)."""
        from blip.engine import Engine
        from blip.runtime import create_runtime, resolve_backend

        model = self.settings.model
        backend = resolve_backend(model.backend, self.package)
        options = {"core": worker} if backend == "sail" and model.workers > 1 else {}
        runtime = create_runtime(backend, device=model.device, threads=model.threads, **options)
        return Engine(self.package, runtime, tasks=self.tasks)

    # -- lifecycle -----------------------------------------------------------------------------
    def start(self) -> None:
        """Publisher, engines (in their worker threads), streams, metrics; then READY=1."""
        self.publisher.start()
        for index in range(self.settings.model.workers):
            worker = Worker(
                index,
                self._engine_factory or functools.partial(self._default_engine, index),
                self.scheduler.get,
                self.streams.state_of,
                self.emitter,
                self.progress,
                self.metrics.observe_inference,
                on_orphan=lambda frame: self._counters_for(frame.stream).drop("shutdown"),
            )
            worker.start()
            self.workers.append(worker)
        for worker in self.workers:
            if not worker.wait_loaded():
                self.stop()
                raise DaemonError("cannot load the model: %s" % (str(worker.load_error).splitlines() or ["timeout"])[0])
        self.streams.apply(self.settings)
        cfg = self.settings.metrics
        if cfg.enabled and cfg.port:
            self._metrics_server = self.metrics.serve(cfg.host, cfg.port)
        self.notifier.ready()
        self.notifier.status(self.status_line())
        log.info("blipd started: boot %s, model %s, %d stream(s)", self.boot, self.package.name, len(self.settings.streams))

    def stop(self) -> None:
        """Reverse order of start, bounded by STOP_BUDGET_S in total."""
        deadline = time.monotonic() + STOP_BUDGET_S
        self.notifier.stopping()
        self.streams.stop_all(timeout=max(0.5, (deadline - time.monotonic()) / 2))
        self.scheduler.close()
        for worker in self.workers:
            if not worker.stop(max(0.1, deadline - time.monotonic() - 1.5)):
                log.warning("worker %d still busy at shutdown; leaving it", worker.index)
        self.publish_stats(final=True)
        self.publisher.stop(timeout=max(0.5, deadline - time.monotonic()))
        if self._metrics_server is not None:
            self.metrics.shutdown(self._metrics_server)

    def run(self) -> int:
        """Install signal handlers, start, loop until SIGTERM/SIGINT; returns the exit code."""
        signal.signal(signal.SIGTERM, lambda *_: self._stop.set())
        signal.signal(signal.SIGINT, lambda *_: self._stop.set())
        signal.signal(signal.SIGHUP, lambda *_: self._reload.set())
        self.start()
        try:
            while not self._stop.wait(TICK_S):
                self.tick()
        finally:
            log.info("stopping")
            self.stop()
        log.info("stopped")
        return 0

    # -- main-thread duties ---------------------------------------------------------------------
    def tick(self) -> None:
        """Reload when asked, ping the watchdog while inference progresses, publish stats when due."""
        if self._reload.is_set():
            self._reload.clear()
            self.reload()
        if self.progress.healthy(waiting=self.scheduler.depth() > 0):
            self.notifier.watchdog()
        if time.monotonic() - self._last_stats >= self.settings.publish.stats_every_s:
            self.publish_stats()
            self.notifier.status(self.status_line())

    def publish_stats(self, final: bool = False) -> None:
        now = time.monotonic()
        interval = max(1e-3, now - self._last_stats)
        self._last_stats = now
        for event in self.streams.stats_events(interval, final=final):
            self.publisher.publish(event)

    def status_line(self) -> str:
        return self.streams.summary()

    def reload(self) -> None:
        """Apply a valid new config stream by stream; keep the old one on any error."""
        self.notifier.reloading()
        try:
            new = load_config(str(self.settings.source_path))
            if new.model.package != self.settings.model.package:
                load_package(new)  # the next restart loads it: judge it now, not then
            check_tasks(new, set(self.package.tasks))
            missing = new.tasks_needed() - set(self.tasks)
            if missing:
                raise ConfigError(
                    "%s: the new config needs task(s) %s that were not loaded at start; restart blipd"
                    % (new.source_path, ", ".join(sorted(missing)))
                )
        except (ConfigError, BlipError) as exc:
            log.error("reload rejected, keeping the running config: %s", str(exc).splitlines()[0])
            self.notifier.ready()
            return
        for section in ("model", "publish", "metrics"):
            if getattr(new, section) != getattr(self.settings, section):
                log.warning("reload: changes to '%s' take effect at the next restart", section)
        diff = diff_streams(self.settings, new)
        self.streams.apply(new, diff)
        self.settings = new
        log.info(
            "reloaded: %d added, %d removed, %d changed, %d unchanged",
            len(diff.added), len(diff.removed), len(diff.changed), len(diff.unchanged),
        )
        self.notifier.ready()


def run_service(config_path: str) -> int:
    """`blipd run`: exit 2 on a bad config or model, 1 on a runtime failure, 0 after a clean stop."""
    settings = load_config(config_path)
    setup_logging(settings.log_level, secrets=settings.secrets())
    try:
        service = Service(settings)
    except (ConfigError, BlipError) as exc:
        log.error("%s", str(exc).splitlines()[0])
        return 2
    try:
        return service.run()
    except DaemonError as exc:
        log.error("%s", exc)
        return 1
