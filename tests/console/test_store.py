"""The console's SQLite store on a real database file: gaps, migrations, search, retention, disk floor."""
import sqlite3
import time
from typing import Any, Dict, Optional

import pytest

from daemon.console.queries import Reader, SearchError, fts_query
from daemon.console.schema import VERSION, StoreError
from daemon.console.store import DB_NAME, Incoming, Store

JPEG = b"\xff\xd8\xff\xe0" + b"\0" * 2000 + b"\xff\xd9"


def event(seq: int, kind: str = "caption", boot: str = "boot-1", t: Optional[float] = None, **extra: Any) -> Dict[str, Any]:
    moment = time.gmtime(t if t is not None else time.time())
    body = {"schema": 1, "type": kind, "stream": "gate", "seq": seq, "boot": boot,
            "time": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", moment), "pts_s": None, "frame": None,
            "latency_ms": None, "model": "demo"}
    if kind == "caption":
        body["text"] = extra.pop("text", "a red circle on the left")
    body.update(extra)
    return body


def put(store: Store, *events: Dict[str, Any], jpeg: Optional[bytes] = None) -> None:
    store.write([Incoming(e, jpeg, time.time()) for e in events])


def test_seq_gaps_and_daemon_restarts_are_recorded(tmp_path):
    store = Store(tmp_path)
    put(store, event(1), event(2), event(5), event(1, boot="boot-2"), event(2, boot="boot-2"))
    gaps = Reader(tmp_path).events(kinds=["gap"])["events"]
    kinds = sorted((g["event"]["kind"], g["event"]["missed"]) for g in gaps)
    assert kinds == [("missed", 2), ("restart", 0)]
    (stream,) = Reader(tmp_path).streams()
    assert stream["missed"] == 2 and stream["restarts"] == 1 and stream["seq"] == 2
    store.close()


def test_gap_across_a_console_restart(tmp_path):
    store = Store(tmp_path)
    put(store, event(1), event(2))
    store.close()
    again = Store(tmp_path)
    put(again, event(9))
    (stream,) = Reader(tmp_path).streams()
    assert stream["missed"] == 6 and stream["last_gap"]["kind"] == "missed"
    again.close()


def test_schema_is_versioned_and_a_newer_database_is_refused(tmp_path):
    Store(tmp_path).close()
    conn = sqlite3.connect(str(tmp_path / DB_NAME))
    assert conn.execute("PRAGMA user_version").fetchone()[0] == VERSION
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.execute("PRAGMA user_version=%d" % (VERSION + 1))
    conn.close()
    with pytest.raises(StoreError, match="newer than this blipd"):
        Store(tmp_path)


def test_search_finds_captions_answers_and_match_prompts_whatever_the_user_types(tmp_path):
    store = Store(tmp_path)
    put(store, event(1, text="a red circle on the left"), event(2, text="an empty yard"),
        event(3, "answer", question="gate", text="is the gate open?", answer="yes"),
        event(4, "match", prompt="truck", text="a red truck", phase="start", score=0.8),
        event(5, "match", prompt="truck", text="a red truck", phase="update", score=0.8))
    reader = Reader(tmp_path)
    texts = lambda q, **kw: sorted(e["type"] for e in reader.search(q, **kw)["events"])  # noqa: E731
    assert texts("red") == ["caption", "match"]  # the update repeats the prompt: not indexed again
    assert texts("gate open") == ["answer"]
    assert texts("circ") == ["caption"]  # the last word is a prefix: results while typing
    assert texts("red", kinds=["match"]) == ["match"]
    for hostile in ('red" OR "x', "NEAR(red circle)", "red*", "^red", "-", "'"):
        reader.search(hostile)  # quoted: never an FTS5 syntax error
    assert texts("red_circ") == ["caption"]  # "_" splits words as the index does (no phrase error)
    with pytest.raises(SearchError):
        reader.search("a\u19b0b")  # a word only FTS5 splits: a clear refusal, not an OperationalError
    assert fts_query("  ") is None
    store.close()


def test_events_page_by_id_newest_first(tmp_path):
    store = Store(tmp_path)
    put(store, *[event(i) for i in range(1, 8)])
    reader = Reader(tmp_path)
    first = reader.events(limit=3)
    second = reader.events(limit=3, before_id=first["next_before"])
    ids = [e["id"] for e in first["events"] + second["events"]]
    assert ids == sorted(ids, reverse=True) and len(set(ids)) == 6
    store.close()


def test_stream_reasons_are_stored_redacted(tmp_path):
    store = Store(tmp_path)
    put(store, event(1, "stream", state="reconnecting", reason="cannot open rtsp://admin:hunter22@cam/1"))
    body = Reader(tmp_path).events()["events"][0]["event"]
    assert "hunter22" not in body["reason"] and "admin:***@cam" in body["reason"]
    raw = (tmp_path / DB_NAME).read_bytes() + b"".join(p.read_bytes() for p in tmp_path.glob(DB_NAME + "-*"))
    assert b"hunter22" not in raw
    store.close()


def test_retention_by_age_deletes_events_and_their_snapshots(tmp_path):
    store = Store(tmp_path, max_age_days=1)
    old = time.time() - 3 * 86400
    put(store, event(1, t=old), event(2, t=old), jpeg=JPEG)
    put(store, event(3), jpeg=JPEG)
    files = list((tmp_path / "snapshots").rglob("*.jpg"))
    assert len(files) == 3
    assert store.enforce_retention() == 2
    assert [e["event"]["seq"] for e in Reader(tmp_path).events()["events"]] == [3]
    assert len(list((tmp_path / "snapshots").rglob("*.jpg"))) == 1
    assert Reader(tmp_path).search("circle")["events"][0]["event"]["seq"] == 3  # index follows
    put(store, event(1, t=old, stream="gone"))
    store.enforce_retention()
    assert [s["stream"] for s in Reader(tmp_path).streams()] == ["gate"]  # a silent stream leaves the page
    store.close()


def test_streams_of_named_boxes_are_told_apart(tmp_path):
    store = Store(tmp_path)
    put(store, event(1, source="box-a"), event(1, source="box-b"), jpeg=JPEG)
    reader = Reader(tmp_path)
    assert sorted(s["stream"] for s in reader.streams()) == ["box-a/gate", "box-b/gate"]
    assert len(reader.search("circle", stream="box-a/gate")["events"]) == 1
    assert reader.snapshot_path(reader.events(stream="box-b/gate")["events"][0]["id"]).startswith("snapshots/box-b_gate/")
    store.close()


def test_retention_by_size_keeps_the_newest(tmp_path):
    store = Store(tmp_path, max_total_mb=0.5)
    for batch in range(20):
        put(store, *[event(batch * 50 + i, text="caption %d %s" % (i, "x" * 300)) for i in range(1, 51)], jpeg=JPEG)
    assert store.used_bytes() > 0.5 * 1024 * 1024
    store.enforce_retention()
    assert store.used_bytes() <= 0.5 * 1024 * 1024
    seqs = [e["event"]["seq"] for e in Reader(tmp_path).events(limit=500)["events"]]
    assert seqs and max(seqs) == 19 * 50 + 50 and min(seqs) > 1
    assert store.snapshot_bytes == len(list((tmp_path / "snapshots").rglob("*.jpg"))) * len(JPEG)
    assert sqlite3.connect(str(tmp_path / DB_NAME)).execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    store.close()


def test_under_the_disk_floor_snapshots_stop_and_events_go_on(tmp_path, caplog):
    store = Store(tmp_path, min_free_mb=1e12)  # more than any disk has free
    put(store, event(1), event(2), jpeg=JPEG)
    assert store.counters.snapshots_skipped_disk == 2 and store.counters.snapshots_written == 0
    assert len(Reader(tmp_path).events()["events"]) == 2
    assert not list((tmp_path / "snapshots").rglob("*.jpg"))
    assert sum("snapshots not written" in r.getMessage() for r in caplog.records) == 1  # once a minute
    store.close()


def test_timeline_shows_what_was_still_going_at_the_start_of_the_period(tmp_path):
    store = Store(tmp_path)
    now = time.time()
    match = {"prompt": "truck", "text": "a red truck", "score": 0.8, "raw_score": 0.8, "peak": 0.9, "duration_s": 0}
    put(store, event(1, "stream", t=now - 600, state="reconnecting", reason="timeout"),
        event(2, "match", t=now - 500, phase="start", started=time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(now - 500)), **match),
        event(3, t=now - 100), event(4, "stream", t=now - 50, state="online"))
    timeline = Reader(tmp_path).timeline("gate", now - 200, now)
    assert [(m["prompt"], m["end"]) for m in timeline["matches"]] == [("truck", None)]
    assert abs(timeline["matches"][0]["start"] - (now - 500)) < 1
    (outage,) = timeline["outages"]
    assert outage["state"] == "reconnecting" and abs(outage["end"] - (now - 50)) < 1
    store.close()


def test_snapshot_names_from_the_bus_stay_in_the_folder_and_each_row_owns_its_file(tmp_path):
    data = tmp_path / "data"
    store = Store(data, max_age_days=1)
    old = time.time() - 3 * 86400
    put(store, event(7, t=old), jpeg=JPEG)
    put(store, event(7), jpeg=JPEG)  # the same boot and seq again (a relay beside its daemon)
    put(store, event("../../../../../x", boot="../../../../", stream=".."), jpeg=JPEG)
    files = sorted(data.rglob("*.jpg"))
    assert len(files) == 3 and all((data / "snapshots") in f.parents for f in files)
    assert not list(tmp_path.glob("*.jpg"))
    assert store.enforce_retention() == 1
    reader = Reader(data)
    newer = reader.events(stream="gate")["events"][0]
    assert (data / reader.snapshot_path(newer["id"])).read_bytes() == JPEG  # not the old row's deleted file
    assert store.snapshot_bytes == 2 * len(JPEG)
    store.close()


def test_a_relays_stats_message_is_neither_recorded_nor_malformed(tmp_path):
    from daemon.console.recorder import Recorder

    store = Store(tmp_path)
    recorder = Recorder(store, [])
    assert recorder._parse([b"relay/r1", b'{"type": "relay", "relay": "r1", "upstreams": []}']) is None
    assert recorder._parse([b"x", b'{"type": "caption"}']) is None
    assert recorder.malformed == 1
    recorder.stop()
    store.close()


def test_retention_removes_the_folders_it_empties_and_writing_goes_on(tmp_path):
    store = Store(tmp_path, max_age_days=1)
    old = time.time() - 3 * 86400
    put(store, event(1, t=old, stream="old-cam"), jpeg=JPEG)
    put(store, event(2), jpeg=JPEG)
    assert store.enforce_retention() == 1
    assert sorted(p.name for p in (tmp_path / "snapshots").iterdir()) == ["gate"]  # old-cam's day and folder gone
    put(store, event(3, stream="old-cam"), jpeg=JPEG)  # the same stream and day again: its folder comes back
    assert len(list((tmp_path / "snapshots" / "old-cam").rglob("*.jpg"))) == 1
    assert store.counters.snapshots_failed == 0
    store.close()


def test_a_failed_batch_leaves_nothing_of_itself_and_its_events_show_as_a_gap(tmp_path):
    store = Store(tmp_path)
    put(store, event(1), jpeg=JPEG)
    bad = event(3)
    bad["unserialisable"] = object()  # json.dumps fails on the batch's second event, after the first's snapshot
    with pytest.raises(TypeError):
        put(store, event(2), bad, jpeg=JPEG)
    assert len(list((tmp_path / "snapshots").rglob("*.jpg"))) == 1
    assert store.snapshot_bytes == len(JPEG) and store.counters.snapshots_written == 1
    put(store, event(4))
    assert (store.counters.gaps, store.counters.missed) == (1, 2), "seq 2 and 3 were lost: a gap, not silence"
    store.close()
