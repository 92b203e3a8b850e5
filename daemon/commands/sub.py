"""`blipd sub`: print the events of a running daemon, raw JSON lines or one readable line each.

A thin SUB client meant for operators and shell pipelines (`blipd sub | jq`): raw mode prints
the JSON exactly as published; pretty mode also notes sequence gaps, since they mean lost events.
"""
import json
import logging
import threading
from typing import Any, Dict, Optional, Sequence, TextIO, Tuple

import zmq

from daemon.config.checks import check_endpoint
from daemon.publish.curve import KeyFileError, load_public_key, make_curve_client

log = logging.getLogger(__name__)

_POLL_MS = 200


def run_subscriber(endpoint: str, topics: Sequence[str], pretty: bool, out: TextIO,
                   stop_event: Optional[threading.Event] = None,
                   curve_server_key: Optional[str] = None, curve_client_keys: Optional[str] = None,
                   max_events: Optional[int] = None) -> int:
    """Print events from `endpoint` until Ctrl-C, stop_event, or max_events; returns the exit code.

    topics:            topic prefixes (`match/`, `caption/gate`); empty = everything
    curve_server_key:  the server's public key file (`server.key`) or its z85 text
    curve_client_keys: this client's secret key file (`client.key_secret`); its public key must be
                       in the server's clients_dir
    """
    stop_event = stop_event if stop_event is not None else threading.Event()
    context = zmq.Context()
    sock = context.socket(zmq.SUB)
    sock.setsockopt(zmq.LINGER, 0)
    try:
        if curve_server_key or curve_client_keys:
            _apply_curve(sock, curve_server_key, curve_client_keys)
        for topic in topics or [""]:
            sock.setsockopt(zmq.SUBSCRIBE, topic.encode("utf-8"))
        try:
            sock.connect(check_endpoint(endpoint))
        except (ValueError, zmq.ZMQError) as exc:  # a usage error (exit 2), like a bad key file
            log.error("endpoint %s: %s", endpoint, exc.strerror if isinstance(exc, zmq.ZMQError) else exc)
            return 2
        _print_until(sock, pretty, out, stop_event, max_events)
    except KeyFileError as exc:
        log.error("%s", exc)
        return 2
    except zmq.ZMQError as exc:
        log.error("subscribe to %s: %s", endpoint, exc.strerror)
        return 1
    except KeyboardInterrupt:
        pass  # Ctrl-C is how this command is meant to end
    finally:
        sock.close(linger=0)
        context.term()
    return 0


def _apply_curve(sock: zmq.Socket, server_key: Optional[str], client_keys: Optional[str]) -> None:
    if not server_key or not client_keys:
        raise KeyFileError("curve: both the server's public key and a client key file are needed")
    server_public = server_key.encode("ascii") if _is_z85_key(server_key) else load_public_key(server_key)
    make_curve_client(sock, server_public, client_keys)


def _is_z85_key(text: str) -> bool:
    return len(text) == 40 and "/" not in text and "." not in text


def _print_until(sock: zmq.Socket, pretty: bool, out: TextIO, stop_event: threading.Event,
                 max_events: Optional[int]) -> None:
    last_seq: Dict[Tuple[str, str], Tuple[str, int]] = {}
    count = 0
    while not stop_event.is_set() and (max_events is None or count < max_events):
        if not sock.poll(_POLL_MS):
            continue
        parts = sock.recv_multipart()
        if len(parts) < 2:
            continue
        count += 1
        if not pretty:
            out.write(parts[1].decode("utf-8", "replace") + "\n")
        else:
            try:
                event = json.loads(parts[1].decode("utf-8"))
            except ValueError:
                log.warning("topic %s: not JSON, skipped", parts[0].decode("utf-8", "replace"))
                continue
            out.write(format_event(event, last_seq, len(parts[2]) if len(parts) > 2 else None) + "\n")
        out.flush()


def format_event(event: Dict[str, Any], last_seq: Optional[Dict[Tuple[str, str], Tuple[str, int]]] = None,
                 jpeg_bytes: Optional[int] = None) -> str:
    """One readable line: `12:00:01 gate caption   "a red circle on the left"`. `last_seq` keeps
    per (source, stream) the last boot and seq seen, so a gap is noted within one daemon run and
    the table stays one entry per stream however often the daemon restarts."""
    clock = str(event.get("time", ""))[11:19]
    kind = str(event.get("type", "?"))
    line = "%s %s %-9s %s" % (clock, event.get("stream", "?"), kind, _detail(kind, event))
    if jpeg_bytes is not None:
        line += "  [jpeg %d kB]" % max(1, round(jpeg_bytes / 1024.0))
    if last_seq is not None and isinstance(event.get("seq"), int):
        key = (str(event.get("source") or ""), str(event.get("stream")))
        boot = str(event.get("boot"))
        previous = last_seq.get(key)
        if previous is not None and previous[0] == boot and event["seq"] > previous[1] + 1:
            line += "  (%d lost)" % (event["seq"] - previous[1] - 1)
        last_seq[key] = (boot, event["seq"])
    return line


def _detail(kind: str, e: Dict[str, Any]) -> str:
    if kind == "caption":
        return json.dumps(e.get("text"), ensure_ascii=False)
    if kind == "match":
        return "%s %s %.2f" % (e.get("phase"), e.get("prompt"), e.get("score") or 0.0)
    if kind == "answer":
        return "%s -> %s" % (e.get("text"), e.get("answer"))
    if kind == "stream":
        return _stream_detail(e)
    if kind == "stats":
        return _stats_detail(e)
    return json.dumps(e, ensure_ascii=False)


def _stream_detail(e: Dict[str, Any]) -> str:
    extra = []
    if e.get("attempt"):
        extra.append("attempt %d" % e["attempt"])
    if e.get("retry_in_s") is not None:
        extra.append("retry in %.1f s" % e["retry_in_s"])
    text = str(e.get("state"))
    if extra:
        text += " (%s)" % ", ".join(extra)
    if e.get("reason"):
        text += ": %s" % e["reason"]
    return text


def _stats_detail(e: Dict[str, Any]) -> str:
    dropped = e.get("dropped") or {}
    text = "decoded %s inferred %s dropped %s failed %s fps %.1f/%.1f queue %s" % (
        e.get("decoded"), e.get("inferred"), sum(dropped.values()), e.get("failed"),
        e.get("fps_in") or 0.0, e.get("fps_out") or 0.0, e.get("queue_depth"))
    latency = e.get("latency")
    if latency:
        text += " p95 %.0f ms" % latency.get("p95_ms", 0.0)
    for key, label in (("publish_dropped", "events lost"), ("subscriber_overflows", "subscriber overflows"),
                       ("undecodable", "undecodable"), ("pts_discontinuities", "pts jumps")):
        if e.get(key):  # shown only when something was lost: the usual line stays short
            text += ", %s %s" % (label, e[key])
    failed_tasks = {task: n for task, n in (e.get("task_failures") or {}).items() if n}
    if failed_tasks:
        text += ", failed tasks %s" % " ".join("%s %d" % item for item in sorted(failed_tasks.items()))
    return text
