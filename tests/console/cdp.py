"""Headless Chromium driven over the DevTools protocol (aiohttp's WebSocket client), for page tests.

Debian's `chromium` only: no driver, no browser download. The page is polled with a deadline for
what a test waits for (no sleeps as synchronisation), and a screenshot is saved as a PNG.
"""
import asyncio
import base64
import itertools
import json
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, Optional

import aiohttp


def chromium_binary() -> Optional[str]:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


class Chromium:
    """`async with Chromium() as page:` then `await page.goto(url)`, `await page.evaluate(js)`."""

    def __init__(self, width: int = 1280, height: int = 900) -> None:
        self.width, self.height = width, height
        self._profile = tempfile.mkdtemp(prefix="blipd-chromium-")
        self._ids = itertools.count(1)
        self.proc: Optional[subprocess.Popen] = None
        self._session: Optional[aiohttp.ClientSession] = None
        self._ws: Any = None

    async def __aenter__(self) -> "Chromium":
        binary = chromium_binary()
        assert binary, "Debian's chromium is not installed (make sysdeps)"
        self.proc = subprocess.Popen(
            [binary, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--hide-scrollbars",
             "--remote-debugging-port=0", "--remote-debugging-address=127.0.0.1",
             "--user-data-dir=" + self._profile, "--window-size=%d,%d" % (self.width, self.height),
             "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        endpoint = await asyncio.get_running_loop().run_in_executor(None, self._devtools_endpoint)
        self._session = aiohttp.ClientSession()
        port = re.search(r":(\d+)/", endpoint).group(1)  # type: ignore[union-attr]
        async with self._session.get("http://127.0.0.1:%s/json/list" % port) as response:
            targets = await response.json()
        page = next(t for t in targets if t.get("type") == "page")
        self._ws = await self._session.ws_connect(page["webSocketDebuggerUrl"], max_msg_size=0)
        await self.send("Page.enable")
        await self.send("Runtime.enable")
        return self

    def _devtools_endpoint(self) -> str:
        assert self.proc is not None and self.proc.stderr is not None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = self.proc.stderr.readline().decode("utf-8", "replace")
            if not line and self.proc.poll() is not None:
                break
            found = re.search(r"DevTools listening on (ws://\S+)", line)
            if found:
                return found.group(1)
        raise AssertionError("chromium did not start its DevTools endpoint")

    async def __aexit__(self, *exc: object) -> None:
        if self._ws is not None:
            await self._ws.close()
        if self._session is not None:
            await self._session.close()
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(10)
        shutil.rmtree(self._profile, ignore_errors=True)

    async def send(self, method: str, **params: Any) -> Dict[str, Any]:
        message_id = next(self._ids)
        await self._ws.send_str(json.dumps({"id": message_id, "method": method, "params": params}))
        while True:
            message = await asyncio.wait_for(self._ws.receive(), 30)
            if message.type != aiohttp.WSMsgType.TEXT:
                raise AssertionError("DevTools connection closed: %s" % message.type)
            data = json.loads(message.data)
            if data.get("id") == message_id:
                if "error" in data:
                    raise AssertionError("%s: %s" % (method, data["error"]))
                return data.get("result", {})

    async def goto(self, url: str) -> None:
        await self.send("Page.navigate", url=url)

    async def evaluate(self, expression: str) -> Any:
        result = await self.send("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise AssertionError("page script failed: %s" % result["exceptionDetails"].get("text"))
        return result["result"].get("value")

    async def wait_for(self, expression: str, timeout: float, what: str) -> Any:
        """Poll until `expression` is truthy in the page; returns its value."""
        deadline = time.monotonic() + timeout
        value = None
        while time.monotonic() < deadline:
            try:
                value = await self.evaluate(expression)
            except AssertionError:
                value = None
            if value:
                return value
            await asyncio.sleep(0.2)  # polling interval, not synchronisation: the deadline decides
        body = await self.evaluate("document.body ? document.body.innerText.slice(0, 1500) : ''")
        raise AssertionError("timed out after %.0f s waiting for %s; page text:\n%s" % (timeout, what, body))

    async def phone(self, width: int = 390, height: int = 844) -> None:
        """Emulate a phone's screen (width in CSS pixels, touch, mobile viewport) from now on."""
        self.width, self.height = width, height
        await self.send("Emulation.setDeviceMetricsOverride", width=width, height=height,
                        deviceScaleFactor=2, mobile=True)

    async def screenshot(self, path: Path, height: Optional[int] = None) -> Path:
        """A PNG of the whole page, or of its top `height` pixels."""
        params: Dict[str, Any] = {"format": "png", "captureBeyondViewport": True}
        if height is not None:
            params["clip"] = {"x": 0, "y": 0, "width": self.width, "height": height, "scale": 1}
        result = await self.send("Page.captureScreenshot", **params)
        Path(path).write_bytes(base64.b64decode(result["data"]))
        return Path(path)
