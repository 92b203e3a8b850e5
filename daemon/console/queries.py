"""Read side of the console database: what the HTTP API asks, one read-only connection per thread.

Readers never block the recorder (WAL: readers see the last commit). Event ids grow with arrival,
so a period is turned into an id range once (index on t) and every list pages by id.
"""
import json
import re
import sqlite3
import threading
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

from daemon.console.store import DB_NAME, open_connection, parse_time

MAX_LIMIT = 500
TIMELINE_MAX_ROWS = 5000
_WORD = re.compile(r"[^\W_]+", re.UNICODE)  # FTS5's unicode61 splits at "_": "a_b" would be a phrase
_TAG = re.compile(r"^[a-z]+$")


class SearchError(ValueError):
    """Text the index cannot search for (a word FTS5 splits where Python does not); the API answers 400."""


def fts_query(text: str, stream: Optional[str] = None, kinds: Sequence[str] = ()) -> Optional[str]:
    """User text -> an FTS5 query: every word must appear, the last one (3+ letters) as a prefix
    (results while typing), narrowed by the type and stream tags.

    Words are quoted, so FTS5 operators typed by a user (NEAR, *, ^, quotes) are plain text.
    """
    words = _WORD.findall(text.lower())[:12]
    if not words:
        return None
    quoted = ['"%s"' % w for w in words]
    if len(words[-1]) >= 3:  # a shorter prefix would merge the lists of half the vocabulary
        quoted[-1] += "*"
    query = "text : (%s)" % " ".join(quoted)
    kinds = [k for k in kinds if _TAG.match(k)]
    if kinds:
        query += " AND tags : (%s)" % " OR ".join('"t%s"' % k for k in kinds)
    if stream:
        query += ' AND tags : ("s%s")' % stream.encode("utf-8").hex()
    return query


def row_to_event(row: Sequence[Any]) -> Dict[str, Any]:
    """(id, t, stream, type, key, snapshot, body) -> the API's event object."""
    event_id, t, stream, kind, key, snapshot, body = row
    return {"id": event_id, "t": t, "stream": stream, "type": kind, "key": key,
            "snapshot": "/api/events/%d/snapshot" % event_id if snapshot else None,
            "event": json.loads(body)}


_COLUMNS = "e.id, e.t, e.stream, e.type, e.key, e.snapshot, e.body"


class Reader:
    """Query functions over the database; safe to call from any thread (one connection each)."""

    def __init__(self, data_dir: Path) -> None:
        self.path = Path(data_dir) / DB_NAME
        self._local = threading.local()

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = open_connection(self.path, readonly=True)
            self._local.conn = conn
        return conn

    def _id_range(self, since: Optional[float], until: Optional[float]) -> Tuple[Optional[int], Optional[int]]:
        """Ids bounding a period: the first event at or after `since`, the last at or before
        `until` (one index probe each). Ids follow arrival, so a few events recorded out of time
        order near the bounds may sit outside; the exact `t` test in the query drops them."""
        conn = self._conn()
        low = high = None
        if since is not None:
            row = conn.execute("SELECT id FROM events WHERE t >= ? ORDER BY t LIMIT 1", (since,)).fetchone()
            low = max(1, row[0] - 1000) if row is not None else 1 << 62
        if until is not None:
            row = conn.execute("SELECT id FROM events WHERE t <= ? ORDER BY t DESC LIMIT 1", (until,)).fetchone()
            high = row[0] + 1000 if row is not None else 0
        return low, high

    def _filters(self, stream: Optional[str], kinds: Sequence[str], since: Optional[float],
                 until: Optional[float], before_id: Optional[int]) -> Tuple[List[str], List[Any]]:
        where: List[str] = []
        args: List[Any] = []
        low, high = self._id_range(since, until)
        if before_id is not None:
            high = before_id - 1 if high is None else min(high, before_id - 1)
        if low is not None:
            where.append("e.id >= ?")
            args.append(low)
        if high is not None:
            where.append("e.id <= ?")
            args.append(high)
        if since is not None:
            where.append("e.t >= ?")
            args.append(since)
        if until is not None:
            where.append("e.t <= ?")
            args.append(until)
        if stream:
            where.append("e.stream = ?")
            args.append(stream)
        if kinds:
            where.append("e.type IN (%s)" % ",".join("?" * len(kinds)))
            args.extend(kinds)
        return where, args

    def events(self, stream: Optional[str] = None, kinds: Sequence[str] = (), since: Optional[float] = None,
               until: Optional[float] = None, before_id: Optional[int] = None, limit: int = 100) -> Dict[str, Any]:
        """Newest first; `next_before` pages on (pass it as before_id) until it is null."""
        limit = max(1, min(limit, MAX_LIMIT))
        where, args = self._filters(stream, kinds, since, until, before_id)
        sql = "SELECT %s FROM events e %s ORDER BY e.id DESC LIMIT ?" % (
            _COLUMNS, ("WHERE " + " AND ".join(where)) if where else "")
        rows = self._conn().execute(sql, args + [limit + 1]).fetchall()
        return self._page(rows, limit)

    def search(self, text: str, stream: Optional[str] = None, kinds: Sequence[str] = (),
               since: Optional[float] = None, until: Optional[float] = None,
               before_id: Optional[int] = None, limit: int = 50) -> Dict[str, Any]:
        """Events whose caption / answer / prompt text holds every word of `text`, newest first."""
        query = fts_query(text, stream, kinds)
        if query is None:
            return {"events": [], "next_before": None}
        limit = max(1, min(limit, MAX_LIMIT))
        where, args = self._filters(stream, kinds, since, until, before_id)
        where = [w.replace("e.id", "f.rowid", 1) if w.startswith("e.id") else w for w in where]
        sql = ("SELECT %s FROM events_fts f JOIN events e ON e.id = f.rowid WHERE events_fts MATCH ? %s"
               " ORDER BY f.rowid DESC LIMIT ?") % (_COLUMNS, "".join(" AND " + w for w in where))
        try:
            rows = self._conn().execute(sql, [query] + args + [limit + 1]).fetchall()
        except sqlite3.OperationalError as exc:
            if "fts5" not in str(exc):
                raise
            # detail=column has no phrases: a word the tokenizer splits (rare scripts) is refused
            raise SearchError("q: cannot search for these words (%s)" % exc) from None
        return self._page(rows, limit)

    @staticmethod
    def _page(rows: List[Any], limit: int) -> Dict[str, Any]:
        more = len(rows) > limit
        events = [row_to_event(row) for row in rows[:limit]]
        return {"events": events, "next_before": events[-1]["id"] if more and events else None}

    def event(self, event_id: int) -> Optional[Dict[str, Any]]:
        row = self._conn().execute("SELECT %s FROM events e WHERE e.id = ?" % _COLUMNS, (event_id,)).fetchone()
        return row_to_event(row) if row else None

    def snapshot_path(self, event_id: int) -> Optional[str]:
        row = self._conn().execute("SELECT snapshot FROM events WHERE id = ?", (event_id,)).fetchone()
        return row[0] if row and row[0] else None

    def streams(self) -> List[Dict[str, Any]]:
        """Per stream its latest caption, state, stats, snapshot, matches and answers, and its gaps."""
        conn = self._conn()
        found: Dict[str, Dict[str, Any]] = {}
        for row in conn.execute("SELECT stream, boot, seq, first_t, last_t, missed, restarts"
                                " FROM streams ORDER BY stream"):
            found[row[0]] = {"stream": row[0], "boot": row[1], "seq": row[2], "first_t": row[3], "last_t": row[4],
                             "missed": row[5], "restarts": row[6], "caption": None, "state": None, "stats": None,
                             "snapshot": None, "matches": [], "answers": [], "last_gap": None}
        rows = conn.execute("SELECT l.type, %s FROM latest l JOIN events e ON e.id = l.event_id"
                            " ORDER BY l.stream, l.key" % _COLUMNS).fetchall()
        for row in rows:
            latest, event = row[0], row_to_event(row[1:])
            entry = found.get(event["stream"])
            if entry is None:
                continue
            body = event["event"]
            if latest == "caption":
                entry["caption"] = {"text": body.get("text"), "t": event["t"], "id": event["id"]}
            elif latest == "stream":
                entry["state"] = {"state": body.get("state"), "reason": body.get("reason"), "t": event["t"],
                                  "attempt": body.get("attempt"), "retry_in_s": body.get("retry_in_s")}
            elif latest == "stats":
                entry["stats"] = {key: body.get(key) for key in
                                  ("fps_in", "fps_out", "dropped", "decoded", "inferred", "failed",
                                   "queue_depth", "latency", "publish_dropped", "subscriber_overflows")}
                entry["stats"]["t"] = event["t"]
            elif latest == "snapshot":
                entry["snapshot"] = {"url": event["snapshot"], "t": event["t"], "id": event["id"]}
            elif latest == "match":
                entry["matches"].append({key: body.get(key) for key in
                                         ("prompt", "text", "phase", "score", "peak", "started", "duration_s")})
                entry["matches"][-1]["t"] = event["t"]
            elif latest == "answer":
                entry["answers"].append({"question": body.get("question"), "text": body.get("text"),
                                         "answer": body.get("answer"), "t": event["t"]})
            elif latest == "gap":
                if entry["last_gap"] is None or event["t"] > entry["last_gap"]["t"]:
                    entry["last_gap"] = {"kind": body.get("kind"), "missed": body.get("missed"), "t": event["t"]}
        return list(found.values())

    def timeline(self, stream: str, since: float, until: float) -> Dict[str, Any]:
        """Caption changes, match intervals per prompt, answers, outages and gaps of one stream."""
        where, args = self._filters(stream, ("caption", "match", "answer", "stream", "gap"), since, until, None)
        rows = self._conn().execute(
            "SELECT %s FROM events e WHERE %s AND (e.type != 'match' OR e.phase != 'update')"
            " ORDER BY e.id DESC LIMIT ?" % (_COLUMNS, " AND ".join(where)), args + [TIMELINE_MAX_ROWS]).fetchall()
        rows.reverse()  # the newest TIMELINE_MAX_ROWS when truncated, oldest first
        out: Dict[str, Any] = {"stream": stream, "since": since, "until": until, "captions": [],
                               "matches": [], "answers": [], "outages": [], "gaps": [],
                               "truncated": len(rows) >= TIMELINE_MAX_ROWS}
        open_matches, outage = self._ongoing_at(stream, rows[0][0] if rows else None, since)
        for row in rows:
            event = row_to_event(row)
            body, t = event["event"], event["t"]
            kind = event["type"]
            if kind == "caption":
                out["captions"].append({"t": t, "text": body.get("text"), "id": event["id"]})
            elif kind == "answer":
                out["answers"].append({"t": t, "question": body.get("question"), "answer": body.get("answer"),
                                       "id": event["id"]})
            elif kind == "match":
                self._match_row(out, open_matches, body, event)
            elif kind == "stream":
                outage = self._outage_row(out, outage, body, t)
            elif kind == "gap":
                out["gaps"].append({"t": t, "kind": body.get("kind"), "missed": body.get("missed")})
        out["matches"].extend(open_matches.values())
        if outage is not None:
            out["outages"].append(outage)
        return out

    def _ongoing_at(self, stream: str, first_id: Optional[int],
                    since: float) -> Tuple[Dict[str, Dict[str, Any]], Optional[Dict[str, Any]]]:
        """Matches and an outage that began before the period and were still going at its start
        (looked for among the last 20,000 events before it)."""
        conn = self._conn()
        if first_id is None:
            first_id = int(conn.execute("SELECT COALESCE(MAX(id), 0) + 1 FROM events").fetchone()[0])
        rows = conn.execute(
            "SELECT %s FROM events e WHERE e.stream = ? AND e.id < ? AND e.id >= ? AND e.t < ?"
            " AND ((e.type = 'match' AND e.phase IN ('start', 'end')) OR e.type = 'stream')"
            " ORDER BY e.id DESC LIMIT 500" % _COLUMNS, (stream, first_id, first_id - 20000, since)).fetchall()
        scratch: Dict[str, Any] = {"matches": [], "outages": []}
        open_matches: Dict[str, Dict[str, Any]] = {}
        outage: Optional[Dict[str, Any]] = None
        for row in reversed(rows):
            event = row_to_event(row)
            if event["type"] == "match":
                self._match_row(scratch, open_matches, event["event"], event)
            else:
                outage = self._outage_row(scratch, outage, event["event"], event["t"])
        return open_matches, outage

    @staticmethod
    def _match_row(out: Dict[str, Any], open_matches: Dict[str, Dict[str, Any]], body: Dict[str, Any],
                   event: Dict[str, Any]) -> None:
        prompt = str(body.get("prompt"))
        started = parse_time(body.get("started"), event["t"])
        if body.get("phase") == "start":
            open_matches[prompt] = {"prompt": prompt, "text": body.get("text"), "start": started,
                                    "end": None, "peak": body.get("peak"), "id": event["id"]}
        elif body.get("phase") == "end":
            interval = open_matches.pop(prompt, None) or {"prompt": prompt, "text": body.get("text"),
                                                          "start": started, "id": event["id"]}
            interval.update(end=event["t"], peak=body.get("peak"))
            out["matches"].append(interval)

    @staticmethod
    def _outage_row(out: Dict[str, Any], outage: Optional[Dict[str, Any]], body: Dict[str, Any],
                    t: float) -> Optional[Dict[str, Any]]:
        state = body.get("state")
        if state == "online":
            if outage is not None:
                outage["end"] = t
                out["outages"].append(outage)
            return None
        if outage is None:
            return {"start": t, "end": None, "state": state, "reason": body.get("reason")}
        outage["state"] = state
        return outage

    def size_bytes(self) -> int:
        conn = self._conn()
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
        size = conn.execute("PRAGMA page_size").fetchone()[0]
        return int(pages * size)
