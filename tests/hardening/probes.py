"""What the hardening tests read from a running daemon: /proc counts, event windows, raw ZMTP peers."""
import collections
import contextlib
import datetime
import os
import random
import socket
import struct
import time
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional

Event = Dict[str, Any]


def thread_count(pid: int) -> int:
    return len(os.listdir("/proc/%d/task" % pid))


def fd_count(pid: int) -> int:
    return len(os.listdir("/proc/%d/fd" % pid))


def rss_mb(pid: int) -> float:
    with open("/proc/%d/status" % pid) as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    raise AssertionError("no VmRSS for pid %d" % pid)


def steady_value(read: Callable[[], int], samples: int = 25, every_s: float = 0.04) -> int:
    """The most frequent of `samples` readings: a reconnect attempt that happens to be opening a
    socket (or a looping file reopening its decoder) at one reading does not count."""
    seen = []
    for _ in range(samples):
        seen.append(read())
        time.sleep(every_s)  # spacing of the readings, not synchronisation
    return collections.Counter(seen).most_common(1)[0][0]


def of(events: Iterable[Event], kind: str, stream: Optional[str] = None, **fields: Any) -> List[Event]:
    """Events of one type (and stream, and field values)."""
    return [e for e in events if e["type"] == kind and (stream is None or e["stream"] == stream)
            and all(e.get(k) == v for k, v in fields.items())]


def iso_to_epoch(text: str) -> float:
    """'2024-05-01T12:00:01.250Z' -> epoch seconds."""
    moment = datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=datetime.timezone.utc)
    return moment.timestamp()


def counts_between(events: Iterable[Event], kind: str, streams: Iterable[str], start: float,
                   end: float) -> Dict[str, int]:
    """Per stream, events of `kind` whose capture `time` lies in [start, end) (epoch seconds)."""
    out = {name: 0 for name in streams}
    for e in events:
        if e["type"] == kind and e["stream"] in out and start <= iso_to_epoch(e["time"]) < end:
            out[e["stream"]] += 1
    return out


def wait_seconds_of_events(collector: Any, seconds: float) -> List[Event]:
    """The events a tests.daemon_proc.EventCollector receives from now until one captured
    `seconds` later arrives. Looks at the newest event only: a scan of the whole list on every
    new event would be quadratic under a flood."""
    start = len(collector.snapshot())
    until = time.time() + seconds
    collector.wait_for(lambda evs: len(evs) > start and iso_to_epoch(evs[-1]["time"]) >= until,
                       timeout=seconds + 30)
    return collector.snapshot()[start:]


def final_stats(events: Iterable[Event]) -> Dict[str, Event]:
    """The last stats event of every stream (the one the daemon publishes when it stops)."""
    last: Dict[str, Event] = {}
    for e in events:
        if e["type"] == "stats":
            last[e["stream"]] = e
    return last


# -- raw peers for the PUB port ----------------------------------------------------------------------

def _host_port(endpoint: str) -> tuple:
    host, _, port = endpoint[len("tcp://"):].rpartition(":")
    return host, int(port)


def _send_and_close(endpoint: str, payloads: List[bytes], timeout_s: float = 5.0) -> None:
    """Connect, send, close; the daemon hanging up on us half-way is the expected outcome."""
    with socket.create_connection(_host_port(endpoint), timeout=timeout_s) as sock:
        try:
            for payload in payloads:
                sock.sendall(payload)
            sock.shutdown(socket.SHUT_WR)
            sock.recv(65536)
        except OSError:  # reset by the daemon: what it should do with garbage
            pass


def zmtp_greeting(mechanism: bytes = b"NULL") -> bytes:
    """A valid ZMTP 3.0 greeting (64 bytes) of a client."""
    return b"\xff" + b"\x00" * 8 + b"\x7f" + b"\x03\x00" + mechanism.ljust(20, b"\x00") + b"\x00" + b"\x00" * 31


def _long_frame(flags: int, body: bytes) -> bytes:
    return bytes([flags | 0x02]) + struct.pack(">Q", len(body)) + body


def _ready_command(socket_type: bytes) -> bytes:
    name = b"Socket-Type"
    body = b"\x05READY" + bytes([len(name)]) + name + struct.pack(">I", len(socket_type)) + socket_type
    return bytes([0x04, len(body)]) + body


def send_garbage(endpoint: str, seed: int = 7) -> List[str]:
    """Throw what a broken or hostile peer might send at a PUB port; returns what was tried:
    random bytes; a ZMTP greeting followed by junk commands; a greeting then a frame that claims
    2**62 bytes; 10 MB of raw junk."""
    rng = random.Random(seed)
    junk = bytes(rng.getrandbits(8) for _ in range(64 * 1024))
    tried = {
        "random bytes": [junk],
        "greeting + junk": [zmtp_greeting(), b"\x04\xff" + junk[:255], junk],
        "greeting + huge frame header": [zmtp_greeting(), b"\x06" + struct.pack(">Q", 2 ** 62), junk],
        "10 MB raw blob": [junk * 160],
    }
    for payloads in tried.values():
        _send_and_close(endpoint, payloads)
    return list(tried)


@contextlib.contextmanager
def oversized_subscription(endpoint: str, size: int = 10 * 1024 * 1024) -> Iterator[None]:
    """A peer that completes the ZMTP NULL handshake as a SUB and subscribes to a `size`-byte topic,
    connected while the block runs (a PUB handles subscriptions while it sends)."""
    with socket.create_connection(_host_port(endpoint), timeout=5.0) as sock:
        try:
            sock.sendall(zmtp_greeting() + _ready_command(b"SUB") + _long_frame(0, b"\x01" + b"a" * size))
        except OSError:  # the daemon hung up on it: fine
            pass
        yield
