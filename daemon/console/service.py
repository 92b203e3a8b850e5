"""Wires the console: store -> recorder thread -> aiohttp server; runs until SIGTERM or SIGINT.

Start order: database (migrations), auth files, sockets (CURVE keys), HTTP listener; stop runs in
reverse: the HTTP side first, then the recorder commits its last batch and closes the database.
"""
import asyncio
import logging
import signal
import sys
from typing import Optional

from aiohttp import web

from daemon.console.auth import Authenticator, read_token, read_users
from daemon.console.config import ConsoleSettings
from daemon.console.queries import Reader
from daemon.console.recorder import Recorder
from daemon.console.server import ConsoleApp
from daemon.console.store import Store
from daemon.ops.notify import Notifier

log = logging.getLogger(__name__)


def build_auth(settings: ConsoleSettings) -> Optional[Authenticator]:
    if settings.auth is None:
        return None
    token = read_token(settings.auth.token_file) if settings.auth.token_file else None
    users = read_users(settings.auth.users_file) if settings.auth.users_file else None
    return Authenticator(token, users)


def page_url(host: str, port: int) -> str:
    shown = "[%s]" % host if ":" in host else host
    return "http://%s:%d/" % (shown, port)


def serve(settings: ConsoleSettings) -> int:
    """Run until a signal; returns the exit code (1 when the address cannot be bound)."""
    data_dir = settings.data_path()
    store = Store(data_dir, snapshots=settings.snapshots.enabled, min_free_mb=settings.snapshots.min_free_mb,
                  max_age_days=settings.retention.max_age_days, max_total_mb=settings.retention.max_total_mb)
    try:
        auth = build_auth(settings)
        return asyncio.run(_main(settings, store, auth))
    finally:
        store.close()


async def _main(settings: ConsoleSettings, store: Store, auth: Optional[Authenticator]) -> int:
    loop = asyncio.get_running_loop()
    # SIGHUP's default action would end the console (an operator's `kill -HUP` to every blipd
    # process, a log rotation script): it has no reload, so it says so and goes on.
    loop.add_signal_handler(signal.SIGHUP, lambda: log.warning(
        "console: SIGHUP ignored: the console does not reload its config; restart it to apply changes"))
    console = ConsoleApp(Reader(store.data_dir), store.data_dir, lambda: recorder.status(), auth)
    recorder = Recorder(store, settings.buses, commit_every_s=settings.commit_every_s,
                        retention_every_s=settings.retention.check_every_s, listener=console.hub.listener(loop))
    recorder.start()
    runner = web.AppRunner(console.build(), handle_signals=False, access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, settings.host, settings.port)
        try:
            await site.start()
        except OSError as exc:
            log.error("cannot listen on %s: %s", settings.listen, exc.strerror or exc)
            return 1
        port = _bound_port(runner, settings.port)
        url = page_url(settings.host, port)
        log.info("console: %s (data in %s)", url, store.data_dir)
        sys.stdout.write("blipd console: %s\n" % url)
        sys.stdout.flush()
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        notifier = Notifier()
        notifier.ready("serving %s" % url)
        await stop.wait()
        notifier.stopping()
        log.info("console: stopping")
        console.hub.close()
        return 0
    finally:
        await runner.cleanup()
        recorder.stop()


def _bound_port(runner: web.AppRunner, configured: int) -> int:
    for address in runner.addresses:
        if isinstance(address, tuple) and len(address) >= 2:
            return int(address[1])
    return configured
