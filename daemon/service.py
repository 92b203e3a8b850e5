"""Wires the daemon together and runs it: start, reload (SIGHUP), stop (SIGTERM).

Threads: one reader per stream (supervisor), N workers (one engine each), one publisher, the
metrics HTTP server; the main thread handles signals, sd_notify, stats and reloads. `start()`
binds what can be busy first (the publishing socket, the metrics port), then loads the engines,
then starts the streams; if any step fails it stops what had started and raises a one-line
DaemonError. `stop()` joins in reverse order of `start()`: readers first (no new frames), then
workers (the frame in flight is finished and published), then the publisher (flushes, then sends
the final stats), all within STOP_BUDGET_S.

Exit status of `blipd run` (also in docs/operations.md): 0 after a clean stop, 1 when it cannot
start or run (publish.bind or metrics.port busy, an ipc path held by a live daemon, the model
fails to load), 2 for a bad config or model package.
"""
import functools
import logging
import time
import uuid
from typing import Any, List, Optional

from blip.errors import BlipError
from daemon.config.config import Settings, check_tasks, diff_streams, load_config
from daemon.errors import ConfigError, DaemonError, ServiceError
from daemon.ops.logsetup import RedactFilter, set_level, setup_logging
from daemon.ops.signals import Signals
from daemon.pipeline.streams import StreamSet
from daemon.pipeline.worker import ENGINE_LOAD_TIMEOUT_S, Worker

log = logging.getLogger(__name__)

WEDGED_AFTER_S = 60.0
"""A frame waiting while no inference finished for this long stops the systemd watchdog pings."""
STOP_BUDGET_S = 8.0
"""systemd's TimeoutStopSec is longer; the whole stop stays under 10 s."""
TICK_S = 0.5
LOAD_POLL_S = 0.2
"""While the engines load, start() looks for a stop signal this often."""
EXIT_OK, EXIT_FAIL, EXIT_CONFIG = 0, 1, 2


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

    def __init__(self, settings: Settings, engine_factory=None,  # type: ignore[no-untyped-def]
                 signals: Optional[Signals] = None, log_filter: Optional[RedactFilter] = None,
                 log_level: Optional[str] = None) -> None:
        """signals: the events `blipd run` installed first thing (None: `run()` installs its own);
        log_filter: the redaction filter of `setup_logging`, given each reload's new secrets;
        log_level: `--log-level`, which wins over the config's `log_level` at start and reload."""
        from daemon.pipeline.emit import Emitter
        from daemon.ops.health import Metrics, Notifier, ProgressMonitor, WatchdogPinger
        from daemon.publish.publisher import Publisher
        from daemon.pipeline.scheduler import Scheduler

        self.settings = settings
        self.boot = uuid.uuid4().hex[:12]
        self.package = load_package(settings)
        self.tasks = tuple(sorted(settings.tasks_needed())) or ("caption",)
        self._engine_factory = engine_factory
        self.notifier = Notifier()
        self.metrics = Metrics()
        self.scheduler = Scheduler(self._counters_for)
        self.progress = ProgressMonitor(stall_after_s=WEDGED_AFTER_S, waiting=lambda: self.scheduler.depth() > 0)
        self.watchdog = WatchdogPinger(self.notifier, self.progress)
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
            max_buffer_bytes=settings.publish.max_buffer_mb * 1024 * 1024,
            max_snapshot_bytes=settings.publish.snapshot.max_bytes if settings.publish.snapshot.enabled else None,
        )
        self.emitter = Emitter(self.publisher, settings.publish)
        self.streams = StreamSet(self.scheduler, self.publisher, self.emitter, self.metrics, device=settings.model.device,
                                 pixel_package=self.package if settings.model.preprocess == "tpu" else None)
        self.workers: List[Worker] = []
        self.signals = signals if signals is not None else Signals()
        self._installed = signals is not None
        self._log_filter = log_filter
        self._log_level = log_level
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
        """Publisher and metrics (the ports), engines (in their worker threads), streams; then
        READY=1. Any failure stops what had started and raises (PublishError, MetricsError,
        ServiceError), so no thread outlives a failed start. A stop signal during the engines'
        load returns at once, streams not started and READY not sent; run() then stops."""
        try:
            self.publisher.start()
            cfg = self.settings.metrics
            if cfg.active:
                self._metrics_server = self.metrics.serve(cfg.host, cfg.port)
            if not self._start_workers():
                log.info("stop asked for while the model loaded; not starting the streams")
                return
            self.streams.apply(self.settings)
        except BaseException:
            self.stop()
            raise
        self.notifier.ready()
        self.notifier.status(self.status_line())
        log.info("blipd started: boot %s, model %s, %d stream(s)", self.boot, self.package.name, len(self.settings.streams))

    def _start_workers(self) -> bool:
        """Start the workers and wait for their engines; False when a stop signal came first (a
        large model can take minutes to load; SIGTERM must not wait for it: the stop that follows
        leaves a still-loading worker behind within STOP_BUDGET_S)."""
        started = time.monotonic()
        for index in range(self.settings.model.workers):
            worker = Worker(
                index,
                self._engine_factory or functools.partial(self._default_engine, index),
                functools.partial(self.scheduler.get, hold=True),  # one frame per stream at a time
                self.streams.state_of,
                self.emitter,
                self.progress,
                self.metrics.observe_inference,
                on_orphan=lambda frame: self._counters_for(frame.stream).drop("shutdown"),
                on_done=self.scheduler.done,
            )
            worker.start()
            self.workers.append(worker)
        deadline = started + ENGINE_LOAD_TIMEOUT_S
        for worker in self.workers:
            while not worker.wait_loaded(LOAD_POLL_S):
                if worker.load_error is not None or time.monotonic() > deadline:
                    raise ServiceError("cannot load the model: %s"
                                       % (str(worker.load_error).splitlines() or ["timeout"])[0])
                if self.signals.stop.is_set():
                    return False
        log.debug("%d worker(s) loaded their engines in %.1f s", len(self.workers), time.monotonic() - started)
        return True

    def stop(self) -> None:
        """Reverse order of start, bounded by STOP_BUDGET_S in total; safe after a partial start.

        The final stats are built by the publisher thread once everything else is flushed, so
        they count every event the publisher handled (sent, dropped, overflowed) but themselves."""
        deadline = time.monotonic() + STOP_BUDGET_S
        self.notifier.stopping()
        self.streams.stop_all(timeout=max(0.5, (deadline - time.monotonic()) / 2))
        self.scheduler.close()
        for worker in self.workers:
            if not worker.stop(max(0.1, deadline - time.monotonic() - 1.5)):
                log.warning("worker %d still busy at shutdown; leaving it", worker.index)
        interval = max(1e-3, time.monotonic() - self._last_stats)
        self.publisher.stop(timeout=max(0.5, deadline - time.monotonic()),
                            final=lambda: self.streams.stats_events(interval, final=True))
        if self._metrics_server is not None:
            self.metrics.shutdown(self._metrics_server)
            self._metrics_server = None

    def run(self) -> int:
        """Start, loop until SIGTERM/SIGINT, stop; returns the exit code. Start-up errors
        (DaemonError) propagate after everything started has been stopped."""
        if not self._installed:
            self.signals.install()
            self._installed = True
        if self.signals.stop.is_set():
            log.info("stop asked for before start; not starting")
            return EXIT_OK
        self.start()
        try:
            while not self.signals.stop.wait(min(TICK_S, self.watchdog.interval_s or TICK_S)):
                self.tick()
        finally:
            log.info("stopping")
            self.stop()
        log.info("stopped")
        return EXIT_OK

    # -- main-thread duties ---------------------------------------------------------------------
    def tick(self) -> None:
        """Reload when asked, ping the watchdog when due, publish stats when due."""
        if self.signals.reload.is_set():
            self.signals.reload.clear()
            self.reload()
        self.watchdog.tick()
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
        if self._log_filter is not None:  # before anything logs about the new streams
            self._log_filter.add_secrets(new.secrets())
        if self._log_level is None and new.log_level != self.settings.log_level:
            set_level(new.log_level)
            log.info("reload: log level now %s", new.log_level)
        for section in ("model", "publish", "metrics"):
            if getattr(new, section) != getattr(self.settings, section):
                log.warning("reload: changes to '%s' take effect at the next restart", section)
        diff = diff_streams(self.settings, new)
        try:
            self.streams.apply(new, diff)
        except Exception:  # the streams now run a mix of old and new: go on with the new config
            log.exception("reload: applying the new config failed part way; streams that could not "
                          "(re)start are retried at the next reload")
        self.settings = new
        log.info(
            "reloaded: %d added, %d removed, %d changed, %d unchanged",
            len(diff.added), len(diff.removed), len(diff.changed), len(diff.unchanged),
        )
        log.debug("reload: added %s, removed %s, changed %s", list(diff.added), list(diff.removed), list(diff.changed))
        self.notifier.ready()


def run_service(config_path: str, log_level: Optional[str] = None, signals: Optional[Signals] = None) -> int:
    """`blipd run`: exit 2 on a bad config or model, 1 when it cannot start or run, 0 after a
    clean stop. log_level: `--log-level` (wins over the config's, also across reloads). signals:
    installed by the CLI before its heavy imports; installed here otherwise, before the config is
    read, so SIGHUP or SIGTERM during start-up is kept, not fatal."""
    if signals is None:
        signals = Signals().install()
    settings = load_config(config_path)  # ConfigError -> the CLI's one line per problem, exit 2
    log_filter = setup_logging(log_level or settings.log_level, secrets=settings.secrets())
    try:
        service = Service(settings, signals=signals, log_filter=log_filter, log_level=log_level)
    except (ConfigError, BlipError) as exc:
        log.error("%s", str(exc).splitlines()[0])
        return EXIT_CONFIG
    try:
        return service.run()
    except DaemonError as exc:
        log.error("cannot start: %s", str(exc).splitlines()[0])
        return EXIT_FAIL
