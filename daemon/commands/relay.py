"""`blipd relay -c relay.yaml`: many daemon buses republished on one bind (ZeroMQ XSUB/XPUB proxy).

SIGHUP re-reads the file: the CURVE clients folder always, and the proxy is rebuilt when upstreams
or the publish side changed (subscribers reconnect on their own). SIGTERM stops within seconds.
"""
import argparse
import logging
import sys

HELP = "fan-in: republish the events of many daemons on one bind"

log = logging.getLogger(__name__)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-c", "--config", required=True, help="relay.yaml (see config/relay.yaml)")
    parser.add_argument("--check", action="store_true", help="validate the configuration and exit")


def run(args: argparse.Namespace) -> int:
    import signal
    import threading

    from daemon.bridges.config import load_relay_config
    from daemon.bridges.relay import Relay
    from daemon.bridges.stats import relay_registry
    from daemon.errors import ConfigError, DaemonError
    from daemon.ops.logsetup import set_level, setup_logging
    from daemon.ops.metrics import MetricsServer
    from daemon.ops.notify import Notifier
    from daemon.publish.curve import KeyFileError

    try:
        settings = load_relay_config(args.config)
    except ConfigError as exc:
        for line in exc.lines:
            sys.stderr.write("blipd: %s\n" % line)
        return 2
    if args.check:
        sys.stdout.write("%s: OK (%d upstream(s))\n" % (args.config, len(settings.upstreams)))
        return 0
    setup_logging(settings.log_level)
    stop, reload = threading.Event(), threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGHUP, lambda *_: reload.set())
    notifier = Notifier()
    try:
        relay = Relay(settings)
        relay.start()
        holder = {"relay": relay}
        server = None
        if settings.metrics.port:
            server = MetricsServer(relay_registry(lambda: holder["relay"].snapshot()), settings.metrics.host,
                                   settings.metrics.port)
    except DaemonError as exc:  # a key file, a port in use
        log.error("%s", exc)
        return 2 if isinstance(exc, (ConfigError, KeyFileError)) else 1
    except Exception as exc:  # zmq.ZMQError from bind/connect: one line, no traceback
        log.error("relay cannot start: %s", getattr(exc, "strerror", None) or exc)
        return 1
    notifier.ready("relaying %d upstream(s)" % len(settings.upstreams))
    try:
        while not stop.wait(0.5):
            if reload.is_set():
                reload.clear()
                _reload(args.config, holder, notifier, set_level, load_relay_config, Relay)
    finally:
        notifier.stopping()
        holder["relay"].stop()
        if server is not None:
            server.close()
    log.info("stopped")
    return 0


def _reload(path, holder, notifier, set_level, load, relay_class) -> None:  # type: ignore[no-untyped-def]
    from daemon.errors import ConfigError

    notifier.reloading()
    try:
        new = load(path)
    except ConfigError as exc:
        log.error("reload rejected, keeping the running config: %s", str(exc).splitlines()[0])
        notifier.ready()
        return
    old = holder["relay"]
    set_level(new.log_level)
    if new == old.settings:
        if old._curve is not None:
            old._curve.reload()
        log.info("reloaded: CURVE clients re-read, nothing else changed")
    else:
        old.stop()
        fresh = relay_class(new)
        fresh.start()
        holder["relay"] = fresh
        log.info("reloaded: proxy rebuilt with %d upstream(s)", len(new.upstreams))
    notifier.ready()
