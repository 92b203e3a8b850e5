"""The console's HTTP side (aiohttp): the page, a JSON API over the recorded history, live updates (SSE).

Every query runs in a worker thread on its own read-only SQLite connection, so a slow search never
holds the event loop. Live updates: the recorder hands each committed batch to `LiveHub` from its
thread; every browser gets a bounded queue, and a browser that falls behind is told to reload
(counted), never allowed to grow memory.
"""
import asyncio
import datetime
import json
import logging
import re
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Set

from aiohttp import web

from daemon.console.auth import COOKIE, Authenticator
from daemon.console.queries import Reader, SearchError

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).resolve().parent / "static"
CLIENT_QUEUE = 64
HEARTBEAT_S = 15.0
EVENT_TYPES = ("caption", "match", "answer", "stream", "stats", "gap")
_CLOSING = "\0closing"
"""Queued to a live client when the console stops (None means: you fell behind, resync)."""
_PERIOD = re.compile(r"^(\d+(?:\.\d+)?)([smhd])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'",
    "X-Frame-Options": "DENY",
}


class BadRequest(ValueError):
    """A query parameter that cannot be used; answered 400 with the message."""


class LiveHub:
    """Fans committed batches out to SSE clients; lives on the event loop's thread."""

    def __init__(self) -> None:
        self.clients: Set["asyncio.Queue[Optional[str]]"] = set()
        self.lagged = 0

    def publish(self, rows: List[Dict[str, Any]]) -> None:
        if not self.clients or not rows:
            return
        data = json.dumps([_live_row(row) for row in rows], separators=(",", ":"), ensure_ascii=False)
        for queue in list(self.clients):
            if queue.full():
                self.lagged += 1
                self.clients.discard(queue)
                queue.get_nowait()
                queue.put_nowait(None)  # tells the handler: too slow, ask the page to resync
            else:
                queue.put_nowait(data)

    def close(self) -> None:
        """End every live stream (shutdown): handlers return instead of waiting for browsers."""
        for queue in list(self.clients):
            self.clients.discard(queue)
            while not queue.empty():
                queue.get_nowait()
            queue.put_nowait(_CLOSING)

    def listener(self, loop: asyncio.AbstractEventLoop) -> Callable[[List[Dict[str, Any]]], None]:
        """A callable for the recorder thread."""
        return lambda rows: loop.call_soon_threadsafe(self.publish, rows)


def _live_row(row: Dict[str, Any]) -> Dict[str, Any]:
    return {"id": row["id"], "t": row["t"], "stream": row["stream"], "type": row["type"], "key": row["key"],
            "snapshot": "/api/events/%d/snapshot" % row["id"] if row["snapshot"] else None, "event": row["body"]}


def parse_time_param(value: Optional[str], name: str) -> Optional[float]:
    """Epoch seconds or ISO 8601 ('2026-12-03T08:00:00Z')."""
    if value is None or value == "":
        return None
    try:
        return float(value)
    except ValueError:
        pass
    try:
        moment = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise BadRequest("%s: expected epoch seconds or ISO 8601 time" % name) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.timezone.utc)
    return moment.timestamp()


def period_bounds(query: Any) -> tuple:
    """since/until from `since`, `until` or `period` (e.g. 15m, 1h, 7d: that long until now)."""
    since = parse_time_param(query.get("since"), "since")
    until = parse_time_param(query.get("until"), "until")
    period = query.get("period")
    if period:
        match = _PERIOD.match(period)
        if match is None:
            raise BadRequest("period: expected a number and s, m, h or d (e.g. 1h)")
        end = until if until is not None else time.time()
        since = end - float(match.group(1)) * _UNITS[match.group(2)]
    return since, until


def _int_param(query: Any, name: str, default: Optional[int]) -> Optional[int]:
    value = query.get(name)
    if value is None or value == "":
        return default
    try:
        number = int(value)
    except ValueError:
        raise BadRequest("%s: expected an integer" % name) from None
    if abs(number) >= 1 << 62:  # SQLite integers are 64-bit: a bigger one was an OverflowError (500)
        raise BadRequest("%s: out of range" % name)
    return number


def _kinds(query: Any) -> List[str]:
    kinds = [k for k in query.get("type", "").split(",") if k]
    for kind in kinds:
        if kind not in EVENT_TYPES:
            raise BadRequest("type: expected one or more of %s" % ", ".join(EVENT_TYPES))
    return kinds


class ConsoleApp:
    """Builds the aiohttp application around a Reader, the recorder's status and a LiveHub."""

    def __init__(self, reader: Reader, data_dir: Path, status: Callable[[], Dict[str, Any]],
                 auth: Optional[Authenticator] = None) -> None:
        self.reader = reader
        self.data_dir = Path(data_dir).resolve()
        self.status = status
        self.auth = auth
        self.hub = LiveHub()

    def build(self) -> web.Application:
        app = web.Application(middlewares=[self._middleware])
        app.router.add_get("/", self.index)
        app.router.add_get("/api/streams", self.streams)
        app.router.add_get("/api/events", self.events)
        app.router.add_get("/api/events/{id:\\d+}", self.event)
        app.router.add_get("/api/events/{id:\\d+}/snapshot", self.snapshot)
        app.router.add_get("/api/search", self.search)
        app.router.add_get("/api/timeline", self.timeline)
        app.router.add_get("/api/status", self.get_status)
        app.router.add_get("/api/live", self.live)
        app.router.add_static("/static/", str(STATIC_DIR))
        return app

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Callable[..., Any]) -> web.StreamResponse:
        set_cookie = None
        if self.auth is not None:
            query_token = request.query.get("token")
            if not self.auth.check(request.headers.get("Authorization", ""), request.cookies.get(COOKIE), query_token):
                headers = {"WWW-Authenticate": self.auth.challenge} if self.auth.challenge else {}
                return web.json_response({"error": "authentication required"}, status=401, headers=headers)
            # only a good ?token= becomes the cookie (not a wrong one beside a good header)
            set_cookie = query_token if query_token and self.auth.check("", None, query_token) else None
        try:
            response = await handler(request)
        except (BadRequest, SearchError) as exc:
            response = web.json_response({"error": str(exc)}, status=400)
        if set_cookie:
            response.set_cookie(COOKIE, set_cookie, httponly=True, samesite="Strict")
        for key, value in _SECURITY_HEADERS.items():
            response.headers.setdefault(key, value)
        return response

    async def _run(self, function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, lambda: function(*args, **kwargs))

    async def index(self, request: web.Request) -> web.StreamResponse:
        return web.FileResponse(str(STATIC_DIR / "index.html"), headers={"Cache-Control": "no-cache"})

    async def streams(self, request: web.Request) -> web.Response:
        return web.json_response({"streams": await self._run(self.reader.streams), "now": time.time()})

    async def events(self, request: web.Request) -> web.Response:
        q = request.query
        since, until = period_bounds(q)
        result = await self._run(self.reader.events, stream=q.get("stream") or None, kinds=_kinds(q),
                                 since=since, until=until, before_id=_int_param(q, "before_id", None),
                                 limit=_int_param(q, "limit", 100) or 100)
        return web.json_response(result)

    async def search(self, request: web.Request) -> web.Response:
        q = request.query
        text = q.get("q", "")
        if not text.strip():
            raise BadRequest("q: give the words to search for")
        since, until = period_bounds(q)
        result = await self._run(self.reader.search, text, stream=q.get("stream") or None, kinds=_kinds(q),
                                 since=since, until=until, before_id=_int_param(q, "before_id", None),
                                 limit=_int_param(q, "limit", 50) or 50)
        return web.json_response(result)

    async def event(self, request: web.Request) -> web.Response:
        found = await self._run(self.reader.event, int(request.match_info["id"]))
        if found is None:
            return web.json_response({"error": "no such event"}, status=404)
        return web.json_response(found)

    async def snapshot(self, request: web.Request) -> web.StreamResponse:
        relative = await self._run(self.reader.snapshot_path, int(request.match_info["id"]))
        path = (self.data_dir / relative).resolve() if relative else None
        if path is None or self.data_dir not in path.parents or not path.is_file():
            return web.json_response({"error": "this event has no snapshot"}, status=404)
        return web.FileResponse(str(path), headers={"Content-Type": "image/jpeg",
                                                    "Cache-Control": "private, max-age=86400"})

    async def timeline(self, request: web.Request) -> web.Response:
        q = request.query
        stream = q.get("stream")
        if not stream:
            raise BadRequest("stream: name the stream")
        since, until = period_bounds(q)
        until = until if until is not None else time.time()
        since = since if since is not None else until - 3600
        return web.json_response(await self._run(self.reader.timeline, stream, since, until))

    async def get_status(self, request: web.Request) -> web.Response:
        status = dict(self.status())
        status["live_clients"] = len(self.hub.clients)
        status["live_lagged"] = self.hub.lagged
        status["database_bytes"] = await self._run(self.reader.size_bytes)
        return web.json_response(status)

    async def live(self, request: web.Request) -> web.StreamResponse:
        """Server-sent events: `data: [rows...]` per committed batch; `event: resync` when too slow."""
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache",
                                               "X-Accel-Buffering": "no"})
        await response.prepare(request)
        queue: "asyncio.Queue[Optional[str]]" = asyncio.Queue(CLIENT_QUEUE)
        self.hub.clients.add(queue)
        try:
            await response.write(b"retry: 2000\n: connected\n\n")
            while True:
                try:
                    data = await asyncio.wait_for(queue.get(), HEARTBEAT_S)
                except asyncio.TimeoutError:
                    await response.write(b": keep-alive\n\n")
                    continue
                if data == _CLOSING:
                    break
                if data is None:
                    await response.write(b"event: resync\ndata: {}\n\n")
                    break
                await response.write(("data: %s\n\n" % data).encode("utf-8"))
        except ConnectionResetError:
            pass  # the browser went away
        finally:
            self.hub.clients.discard(queue)
        return response
