"""The real daemon on the demo clip feeding a real `blipd console`; the API over HTTP, live updates,
kill -9 and restart, a daemon restart, and the page in headless Chromium (screenshots kept as test
artifacts).

One daemon and one console for the module; tests run in file order and build on each other's
recording (the page test comes last so it also shows the gap the kill -9 left).
"""
import asyncio
import json
import sqlite3
import urllib.parse
from pathlib import Path
from typing import Any, Dict, Iterator

import aiohttp
import pytest
import yaml

from tests.console.cdp import Chromium, chromium_binary
from tests.console.proc import ConsoleProcess, free_port
from tests.daemon_proc import REPO, DaemonProcess, EventCollector, free_tcp_endpoint

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dict[str, Any]]:
    folder = tmp_path_factory.mktemp("console")
    endpoint = free_tcp_endpoint()
    demo = yaml.safe_load((REPO / "config" / "demo.yaml").read_text())
    stream = dict(demo["streams"][0], url=str(REPO / "samples" / "demo.mp4"))
    stream["caption"] = {"enabled": True, "every_s": 1}
    stream["prompts"] = [dict(p, dwell_s=0) for p in stream["prompts"]]
    config = dict(demo, streams=[stream])
    config["model"] = dict(demo["model"], package=str(REPO / "models" / "demo"))
    config["publish"] = {"bind": endpoint, "heartbeat_s": 5, "stats_every_s": 2,
                         "snapshot": {"enabled": True, "max_side": 320}}
    daemon_yaml = folder / "blipd.yaml"
    daemon_yaml.write_text(yaml.safe_dump(config, sort_keys=False))
    port = free_port()
    console_yaml = folder / "console.yaml"
    console_yaml.write_text(yaml.safe_dump({
        "buses": [{"endpoint": endpoint}], "listen": "127.0.0.1:%d" % port, "data_dir": str(folder / "data"),
        "retention": {"max_age_days": 7, "max_total_mb": 512}, "snapshots": {"enabled": True, "min_free_mb": 1}}))
    with EventCollector(endpoint) as bus, DaemonProcess(daemon_yaml) as daemon:
        console = ConsoleProcess(["-c", str(console_yaml)], port).start()
        state = {"console": console, "bus": bus, "daemon": daemon, "data": folder / "data", "config": daemon_yaml}
        try:
            yield state
        finally:
            console.__exit__(None, None, None)  # stops it and removes its log file
            if "restarted" in state:
                state["restarted"].__exit__(None, None, None)


def _caption_stream(answer: Dict[str, Any]) -> Any:
    return next((s for s in answer["streams"] if s["stream"] == "demo" and s["caption"]), None)


def test_streams_show_the_demo_caption_and_a_snapshot(setup):
    console = setup["console"]
    answer = console.wait_json("/api/streams", _caption_stream, 60, "a caption of the demo stream")
    stream = _caption_stream(answer)
    published = {e["text"] for e in setup["bus"].snapshot() if e["type"] == "caption"}
    assert stream["caption"]["text"] in published
    answer = console.wait_json("/api/streams", lambda a: _caption_stream(a)["snapshot"], 30, "a snapshot")
    status, headers, body = console.get(_caption_stream(answer)["snapshot"]["url"])
    assert status == 200 and headers["Content-Type"] == "image/jpeg" and body[:2] == b"\xff\xd8"


def test_events_by_type_with_paging(setup):
    console = setup["console"]
    console.wait_json("/api/events?type=caption&limit=2", lambda a: a["next_before"], 60, "three captions")
    first = console.json("/api/events?stream=demo&type=caption&limit=2")
    second = console.json("/api/events?stream=demo&type=caption&limit=2&before_id=%d" % first["next_before"])
    ids = [e["id"] for e in first["events"] + second["events"]]
    assert ids == sorted(ids, reverse=True) and len(set(ids)) == len(ids) >= 3
    assert {e["type"] for e in first["events"] + second["events"]} == {"caption"}
    recent = console.json("/api/events?period=1h&limit=500")["events"]
    assert {"caption", "stats"} <= {e["type"] for e in recent}
    status, _, body = console.get("/api/events?period=yesterday")
    assert status == 400 and b"period" in body
    assert console.get("/api/events/999999999")[0] == 404


def test_search_finds_a_caption_word_and_the_match_start(setup):
    console = setup["console"]
    answer = console.wait_json("/api/search?q=circle", lambda a: a["events"], 60, "a caption with 'circle'")
    assert all("circle" in json.dumps(e["event"]).lower() for e in answer["events"])
    console.wait_json("/api/search?q=red+circle&type=match",
                      lambda a: any(e["event"]["phase"] == "start" for e in a["events"]), 60, "a red_circle match")
    assert console.json("/api/search?q=circle&stream=nosuchstream")["events"] == []


def test_live_updates_arrive_over_server_sent_events(setup):
    async def first_batch() -> Any:
        async with aiohttp.ClientSession() as session:
            async with session.get(setup["console"].base + "/api/live", timeout=aiohttp.ClientTimeout(total=60)) as r:
                assert r.headers["Content-Type"].startswith("text/event-stream")
                async for raw in r.content:
                    line = raw.decode().strip()
                    if line.startswith("data: ["):
                        return json.loads(line[len("data: "):])
        return None

    rows = asyncio.run(first_batch())
    assert rows and all(row["stream"] == "demo" and row["event"]["type"] == row["type"] for row in rows)


def test_kill_9_loses_nothing_committed_and_the_gap_is_recorded(setup):
    console, data = setup["console"], setup["data"]
    before = console.json("/api/status")["recorded"]
    last = console.json("/api/streams")["streams"][0]["seq"]
    console.kill9()
    # the daemon goes on publishing while the console is down: those events are the gap
    setup["bus"].wait_for(lambda evs: any(e["seq"] > last + 3 for e in evs if e["stream"] == "demo"), 30)
    conn = sqlite3.connect(str(data / "console.db"))
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    kept = conn.execute("SELECT COUNT(*) FROM events WHERE type != 'gap'").fetchone()[0]
    conn.close()
    assert kept >= before  # everything reported recorded before the kill is still there
    console.start()
    answer = console.wait_json("/api/streams", lambda a: a["streams"] and a["streams"][0]["missed"] > 0, 30, "the gap")
    assert answer["streams"][0]["last_gap"]["kind"] == "missed"
    gaps = console.json("/api/events?type=gap")["events"]
    assert gaps and gaps[0]["event"]["missed"] >= 3


def test_a_daemon_restart_is_recorded_as_such(setup):
    console = setup["console"]
    assert setup["daemon"].terminate(timeout=15) == 0
    setup["restarted"] = DaemonProcess(setup["config"]).__enter__()
    answer = console.wait_json("/api/streams", lambda a: a["streams"][0]["restarts"] >= 1, 60, "the restart")
    assert answer["streams"][0]["boot"] != setup["bus"].snapshot()[0]["boot"]
    gaps = console.json("/api/events?type=gap")["events"]
    assert gaps[0]["event"]["kind"] == "restart" and gaps[0]["event"]["previous_boot"]


@pytest.mark.skipif(chromium_binary() is None, reason="needs Debian's chromium (make sysdeps)")
def test_the_page_shows_caption_match_bar_search_results_gap_and_restart(setup, tmp_path):
    console = setup["console"]
    console.wait_json("/api/search?q=circle&type=match", lambda a: a["events"], 60, "a match")

    async def check() -> Dict[str, Any]:
        async with Chromium(1280, 1000) as page:
            await page.goto(console.base + "/?stream=demo&q=" + urllib.parse.quote("circle"))
            caption = await page.wait_for(
                "(document.querySelector('.card[data-stream=demo] .caption') || {}).textContent", 30, "a caption")
            bars = await page.wait_for("document.querySelectorAll('#timeline .bar.match').length", 30, "a match bar")
            results = await page.wait_for(
                "Array.from(document.querySelectorAll('#results .result .text')).map(e => e.textContent)", 30,
                "search results")
            notice = await page.wait_for("(document.querySelector('.card .notice') || {}).textContent", 30, "the gap")
            shot = await page.screenshot(tmp_path / "console.png")
            await page.evaluate("document.querySelector('#results .result').click()")
            opened = await page.wait_for(
                "(document.querySelector('#detail[open] #detail-body img') || {}).naturalWidth", 30,
                "a result opened with its snapshot")
            await page.phone()
            await page.goto(console.base + "/?stream=demo")
            await page.wait_for("document.querySelectorAll('#timeline .bar.match').length", 30, "the page on a phone")
            overflow = await page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
            await page.screenshot(tmp_path / "console-phone.png", height=1600)
            return {"caption": caption, "bars": bars, "results": results, "notice": notice, "shot": shot,
                    "phone_overflow": overflow, "opened": opened}

    seen = asyncio.run(check())
    captions = {e["event"]["text"] for e in console.json("/api/events?type=caption&limit=500")["events"]}
    assert seen["caption"] in captions
    assert seen["bars"] >= 1
    assert seen["results"] and all("circle" in text for text in seen["results"])
    assert "missed" in seen["notice"] and "daemon restarted" in seen["notice"]
    assert seen["opened"] > 0  # the result's snapshot loaded in the event's dialog
    assert Path(seen["shot"]).stat().st_size > 10000
    assert seen["phone_overflow"] <= 0  # nothing wider than a phone's screen: no sideways scrolling
