"""`blipd bridge`: events of daemon buses into MQTT (with Home Assistant discovery) and webhooks.

    blipd bridge -c bridge.yaml
    blipd bridge --sub tcp://127.0.0.1:5556 --mqtt mqtt://[USER@]HOST:PORT [--prefix blipd] [--home-assistant]

With --mqtt, a password comes from $BLIPD_MQTT_PASSWORD (never from the command line).
"""
import argparse
import logging
import sys
from typing import Any, Dict

HELP = "forward daemon events to MQTT / Home Assistant and webhooks"
PASSWORD_ENV = "BLIPD_MQTT_PASSWORD"

log = logging.getLogger(__name__)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-c", "--config", help="bridge.yaml (see config/bridge.yaml)")
    parser.add_argument("--sub", action="append", metavar="ADDR", help="a daemon bus, e.g. tcp://127.0.0.1:5556 "
                        "(repeat for several)")
    parser.add_argument("--mqtt", metavar="URL", help="mqtt://[USER@]HOST[:PORT] (password in $%s)" % PASSWORD_ENV)
    parser.add_argument("--prefix", default="blipd", help="MQTT topic prefix (default blipd)")
    parser.add_argument("--home-assistant", action="store_true", help="publish Home Assistant discovery")
    parser.add_argument("--check", action="store_true", help="validate the configuration and exit")


def _from_options(args: argparse.Namespace) -> Dict[str, Any]:
    import os

    mqtt: Dict[str, Any] = {"url": args.mqtt, "prefix": args.prefix,
                            "home_assistant": {"enabled": bool(args.home_assistant)}}
    if os.environ.get(PASSWORD_ENV) is not None:
        mqtt["password_env"] = PASSWORD_ENV
    return {"sources": [{"connect": addr} for addr in args.sub], "mqtt": mqtt}


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from daemon.bridges.bridge import Bridge
    from daemon.bridges.config import bridge_from_data, load_bridge_config
    from daemon.errors import ConfigError, DaemonError
    from daemon.ops.logsetup import setup_logging
    from daemon.publish.curve import KeyFileError

    if bool(args.config) == bool(args.sub or args.mqtt):
        sys.stderr.write("blipd: bridge: give -c FILE, or --sub ADDR with --mqtt URL\n")
        return 2
    if not args.config and not (args.sub and args.mqtt):
        sys.stderr.write("blipd: bridge: --sub and --mqtt go together\n")
        return 2
    try:
        settings = load_bridge_config(args.config) if args.config else bridge_from_data(_from_options(args))
    except ConfigError as exc:
        for line in exc.lines:
            sys.stderr.write("blipd: %s\n" % line)
        return 2
    if args.check:
        sys.stdout.write("%s: OK (%d source(s), mqtt %s, %d webhook(s))\n" % (
            args.config or "options", len(settings.sources), "on" if settings.mqtt else "off", len(settings.webhooks)))
        return 0
    log_filter = setup_logging(settings.log_level, secrets=settings.secrets())
    bridge = Bridge(settings, Path(args.config).resolve() if args.config else None, log_filter)
    try:
        return bridge.run()
    except (ConfigError, KeyFileError) as exc:  # the HA daemon config or a CURVE key file is unusable
        log.error("%s", str(exc).splitlines()[0])
        return 2
    except DaemonError as exc:
        log.error("%s", exc)
        return 1
