"""`blipd console`: record the events of one or more daemons and serve a web page and an HTTP API.

    blipd console -c console.yaml
    blipd console --sub tcp://127.0.0.1:5556 [--sub ...] [--listen 127.0.0.1:8080] [--data DIR]

Binds 127.0.0.1 by default; any other address needs `auth` (a token or users file) and the
console refuses to start without it. Exit codes: 0 stopped by a signal, 1 runtime failure, 2 bad
input (config, key files, data folder, a non-loopback address without auth).
"""
import argparse
import sys
from typing import Any, Dict, List

HELP = "record daemons' events (SQLite, full-text search) and serve a web page and HTTP API"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-c", "--config", default=None, help="console.yaml (instead of --sub)")
    parser.add_argument("--sub", action="append", default=None, metavar="ADDR",
                        help="a daemon's bus to record, e.g. tcp://127.0.0.1:5556 (repeatable)")
    parser.add_argument("--listen", default=None, metavar="HOST:PORT",
                        help="where the page is served (default 127.0.0.1:8080)")
    parser.add_argument("--data", default=None, metavar="DIR",
                        help="database and snapshots folder (default $STATE_DIRECTORY, "
                             "else $XDG_STATE_HOME/blipd-console or ~/.local/state/blipd-console)")
    parser.add_argument("--token-file", default=None, metavar="FILE",
                        help="require this bearer token (a 0600 file); needed to listen beyond loopback")


def _settings_from_options(args: argparse.Namespace) -> Any:
    from daemon.console.config import load_settings, parse_settings
    from daemon.errors import ConfigError

    if args.config and args.sub:
        raise ConfigError("give either -c FILE or --sub ADDR, not both")
    if args.config:
        settings = load_settings(args.config)
        overrides: Dict[str, Any] = {}
        if args.listen:
            overrides["listen"] = args.listen
        if args.data:
            overrides["data_dir"] = args.data
        if overrides:
            data = settings.model_dump(exclude_none=True)
            data.update(overrides)
            settings = parse_settings(data, "options")
        return settings
    if not args.sub:
        raise ConfigError("nothing to record: give -c console.yaml or --sub tcp://HOST:PORT")
    data: Dict[str, Any] = {"buses": [{"endpoint": address} for address in args.sub]}
    if args.listen:
        data["listen"] = args.listen
    if args.data:
        data["data_dir"] = args.data
    if args.token_file:
        data["auth"] = {"token_file": args.token_file}
    return parse_settings(data, "options")


def _fail(lines: List[str], code: int) -> int:
    for line in lines:
        sys.stderr.write("blipd console: %s\n" % line)
    return code


def run(args: argparse.Namespace) -> int:
    from daemon.console.schema import StoreError
    from daemon.errors import ConfigError, DaemonError
    from daemon.ops.logsetup import setup_logging

    try:
        settings = _settings_from_options(args)
    except ConfigError as exc:
        return _fail(list(exc.lines), 2)
    setup_logging(getattr(args, "log_level", None) or settings.log_level)
    try:
        from daemon.console.service import serve
    except ImportError as exc:  # aiohttp is the `console` extra
        return _fail(["needs the 'console' extra (pip install 'blipd[console]'): %s" % exc], 2)

    try:
        return serve(settings)
    except (ConfigError, StoreError) as exc:
        return _fail(str(exc).splitlines(), 2)
    except DaemonError as exc:  # KeyFileError from a bus's CURVE keys
        return _fail(str(exc).splitlines(), 2)
