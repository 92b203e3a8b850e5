"""Webhooks: POST chosen events as JSON, signed, retried with capped backoff and jitter, bounded.

One thread per webhook sends its queue in order. A request that fails on the network, times out, or
gets 408/429/5xx is retried after a full-jitter exponential delay (`backoff_initial_s` doubling
up to `backoff_max_s`) at most `max_attempts` times in all, then counted as failed; any other 4xx
is counted as failed at once (retrying will not fix it). While one event is retried the next ones
wait in the bounded queue, where overflow is counted.

Signature: `X-Blipd-Signature-256: sha256=<hex HMAC-SHA256 of the body with the secret>`; the body
is the event JSON exactly as the daemon published it.
"""
import hashlib
import hmac
import logging
import random
import threading
import urllib.error
import urllib.request
from typing import Any, Dict, Optional

from blip.redact import redact_url
from daemon.bridges.config import WebhookSettings
from daemon.bridges.sinkqueue import SinkQueue
from daemon.bridges.source import BusEvent
from daemon.ops.ratelimit import RateLimiter

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Blipd-Signature-256"
RETRY_STATUS = (408, 425, 429)


def sign(secret: bytes, body: bytes) -> str:
    """The signature header's value for `body`."""
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def wanted(settings: WebhookSettings, item: BusEvent) -> bool:
    """Whether the webhook's filters (types, streams, prompts, match phases) take this event."""
    if item.type not in settings.types:
        return False
    if settings.streams and item.stream not in settings.streams:
        return False
    if item.type == "match":
        if settings.prompts and str(item.event.get("prompt")) not in settings.prompts:
            return False
        if str(item.event.get("phase")) not in settings.phases:
            return False
    return True


class _Retry(Exception):
    """This attempt failed in a way a later attempt may not."""


class WebhookSink:
    """One URL: filter, queue (bounded), send in order with retries."""

    def __init__(self, settings: WebhookSettings, index: int) -> None:
        self.settings = settings
        self.display = redact_url(settings.url)
        self.name = "webhook%d" % index
        self.queue = SinkQueue(self.name, settings.queue_size)
        self.attempts = 0
        self.retries = 0
        self.unsent = 0
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._limiter = RateLimiter(60.0)
        secret = settings.secret.get_secret_value() if settings.secret is not None else ""
        self._secret = secret.encode("utf-8") if secret else None

    def offer(self, item: BusEvent) -> None:
        if wanted(self.settings, item) and not self.queue.put(item):
            allowed, _ = self._limiter.allow("overflow")
            if allowed:
                log.warning("webhook %s: queue full (%d events), %d dropped so far (logged once a minute)",
                            self.display, self.queue.size, self.queue.overflow)

    def snapshot(self) -> Dict[str, Any]:
        out: Dict[str, Any] = dict(self.queue.snapshot())
        out.update(attempts=self.attempts, retries=self.retries, unsent=self.unsent)
        return out

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> int:
        """Stop within `timeout` s; a request still in flight then is abandoned and counted as not sent
        (the thread is a daemon thread). Returns the events not sent."""
        self._stop.set()
        self.queue.wake()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                self.unsent += 1
        self.unsent += len(self.queue.drain())
        if self.unsent:
            log.warning("webhook %s: %d queued event(s) not sent at shutdown", self.display, self.unsent)
        return self.unsent

    def _run(self) -> None:
        while not self._stop.is_set():
            item = self.queue.get(timeout=0.5)
            if item is None:
                continue
            try:
                delivered = self._deliver(item)
            except Exception:  # a bug in one delivery must not end the thread
                log.exception("webhook %s: delivery failed", self.display)
                delivered = False
            if delivered:
                self.queue.count_delivered()
            elif delivered is False:
                self.queue.count_failed()

    def _deliver(self, item: BusEvent) -> Optional[bool]:
        """True sent, False failed for good, None interrupted by stop (counted as unsent)."""
        s = self.settings
        for attempt in range(1, s.max_attempts + 1):
            if attempt > 1:
                self.retries += 1
                delay = random.uniform(0, min(s.backoff_max_s, s.backoff_initial_s * 2 ** (attempt - 2)))
                if self._stop.wait(delay):
                    self.unsent += 1
                    return None
            try:
                return self._post(item)
            except _Retry as exc:
                allowed, _ = self._limiter.allow("retry")
                if allowed:
                    log.warning("webhook %s: %s (attempt %d of %d; logged once a minute)",
                                self.display, exc, attempt, s.max_attempts)
        log.warning("webhook %s: event %s/%s seq %s failed after %d attempts", self.display, item.type,
                    item.stream, item.event.get("seq"), s.max_attempts)
        return False

    def _post(self, item: BusEvent) -> bool:
        headers = {"Content-Type": "application/json", "User-Agent": "blipd-bridge",
                   "X-Blipd-Event": item.type,
                   "X-Blipd-Delivery": "%s:%s:%s" % (item.event.get("boot"), item.stream, item.event.get("seq"))}
        if self._secret is not None:
            headers[SIGNATURE_HEADER] = sign(self._secret, item.raw)
        request = urllib.request.Request(self.settings.url, data=item.raw, headers=headers, method="POST")
        self.attempts += 1
        try:
            with urllib.request.urlopen(request, timeout=self.settings.timeout_s) as response:
                response.read(65536)
                return True
        except urllib.error.HTTPError as exc:
            exc.close()
            if exc.code >= 500 or exc.code in RETRY_STATUS:
                raise _Retry("HTTP %d" % exc.code) from None
            log.warning("webhook %s: HTTP %d, not retried", self.display, exc.code)
            return False
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", None) or exc
            raise _Retry("cannot send: %s" % (getattr(reason, "strerror", None) or reason.__class__.__name__)) from None
