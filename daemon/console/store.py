"""The recorder's side of the database: one writer connection, batches in one transaction each.

WAL journal with synchronous=NORMAL: a commit is in the WAL before COMMIT returns, so killing the
process at any moment loses only what was not yet committed (the recorder commits at least every
`commit_every_s`, default 0.25 s) and never corrupts the file. Snapshots are written as files
(temporary name, then rename) before their row; an orphan JPEG is the worst a kill leaves.
"""
import dataclasses
import datetime
import json
import logging
import os
import re
import shutil
import sqlite3
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Set, Tuple

from blip.redact import redact_text
from daemon.console.schema import StoreError, migrate
from daemon.ops.ratelimit import RateLimiter

log = logging.getLogger(__name__)

DB_NAME = "console.db"
SNAPSHOT_DIR = "snapshots"
_CHUNK = 2000
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")


def _file_part(text: str, limit: int) -> str:
    """A piece of a snapshot's file name: safe characters only, never "." or ".." (path traversal)."""
    return _UNSAFE.sub("_", text)[:limit].lstrip(".") or "x"


@dataclass(frozen=True)
class Incoming:
    """One message from a bus: the parsed event, its JPEG when the daemon sent one, when it came."""

    event: Dict[str, Any]
    jpeg: Optional[bytes]
    received: float


@dataclass
class StoreCounters:
    """What the recorder did since start; /api/status shows it."""

    recorded: int = 0
    gaps: int = 0
    missed: int = 0
    restarts: int = 0
    snapshots_written: int = 0
    snapshots_skipped_disk: int = 0
    snapshots_failed: int = 0
    retention_deleted: int = 0
    commits: int = 0


@dataclass
class _StreamSeq:
    boot: Optional[str]
    seq: Optional[int]
    extra: Dict[str, Any] = field(default_factory=dict)


def open_connection(path: Path, readonly: bool = False) -> sqlite3.Connection:
    """A connection with the settings every user of the file needs (WAL, busy timeout)."""
    conn = sqlite3.connect(str(path), timeout=5.0, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA busy_timeout=5000")
    if readonly:
        conn.execute("PRAGMA query_only=1")
    else:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
    return conn


def parse_time(text: Any, fallback: float) -> float:
    """ISO 8601 UTC ('2026-12-03T08:00:01.250Z') -> epoch seconds; `fallback` if unreadable."""
    if not isinstance(text, str):
        return fallback
    try:
        moment = datetime.datetime.strptime(text.rstrip("Z")[:26], "%Y-%m-%dT%H:%M:%S.%f")
    except ValueError:
        try:
            moment = datetime.datetime.strptime(text.rstrip("Z")[:19], "%Y-%m-%dT%H:%M:%S")
        except ValueError:
            return fallback
    return moment.replace(tzinfo=datetime.timezone.utc).timestamp()


def stream_key(event: Dict[str, Any]) -> str:
    """Streams of different boxes may share a name: `source/stream` when the event names its box."""
    source = event.get("source")
    return "%s/%s" % (source, event["stream"]) if isinstance(source, str) and source else str(event["stream"])


def searchable_text(event: Dict[str, Any]) -> Optional[str]:
    """What search finds an event by: a caption, a question and its answer, a match's prompt text."""
    kind = event.get("type")
    if kind == "caption":
        return str(event.get("text") or "") or None
    if kind == "answer":
        return "%s %s" % (event.get("text") or "", event.get("answer") or "")
    if kind == "match" and event.get("phase") == "start":
        return str(event.get("text") or event.get("prompt") or "") or None
    return None


class Store:
    """Owns the writer connection and the snapshot folder; used from the recorder thread only."""

    def __init__(self, data_dir: Path, snapshots: bool = True, min_free_mb: float = 1024.0,
                 max_age_days: float = 30.0, max_total_mb: float = 2048.0) -> None:
        self.data_dir = Path(data_dir)
        try:
            self.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)  # camera pictures: owner only
            (self.data_dir / SNAPSHOT_DIR).mkdir(mode=0o700, exist_ok=True)
        except OSError as exc:
            raise StoreError("data folder %s: %s" % (self.data_dir, exc.strerror or exc)) from None
        self.path = self.data_dir / DB_NAME
        self.snapshots = snapshots
        self.min_free_bytes = min_free_mb * 1024 * 1024
        self.max_age_s = max_age_days * 86400.0
        self.max_total_bytes = max_total_mb * 1024 * 1024
        self.counters = StoreCounters()
        self._limiter = RateLimiter(60.0)
        self._free_checked = (0.0, True)
        self._folders: Set[str] = set()
        self._batch_files: List[Path] = []
        try:
            self.conn = open_connection(self.path)
            migrate(self.conn, str(self.path))
            if self.conn.execute("PRAGMA quick_check").fetchone()[0] != "ok":
                raise StoreError("%s: integrity check failed" % self.path)
            self.snapshot_bytes = int(self.conn.execute(
                "SELECT COALESCE(SUM(snapshot_bytes), 0) FROM events").fetchone()[0])
            self._seqs = {row[0]: _StreamSeq(row[1], row[2]) for row in
                          self.conn.execute("SELECT stream, boot, seq FROM streams")}
        except sqlite3.Error as exc:
            raise StoreError("%s: %s" % (self.path, exc)) from None

    def close(self) -> None:
        self.conn.close()

    # -- writing -------------------------------------------------------------------------

    def write(self, batch: List[Incoming]) -> List[Dict[str, Any]]:
        """Record a batch in one transaction; returns the rows written (gap records included).

        A batch that fails leaves nothing of itself: the rows roll back, and so do the in-memory
        seq tracking (the next event then shows the lost ones as a gap), the snapshot byte count
        and counters, and the batch's snapshot files are deleted (no row names them)."""
        rows: List[Dict[str, Any]] = []
        seqs, snapshot_bytes, counters = dict(self._seqs), self.snapshot_bytes, dataclasses.replace(self.counters)
        self._batch_files = []
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            for item in batch:
                rows.extend(self._write_one(item))
            self.conn.execute("COMMIT")
        except BaseException:
            self.conn.execute("ROLLBACK")
            self._seqs, self.snapshot_bytes = seqs, snapshot_bytes
            for name in ("gaps", "missed", "restarts", "snapshots_written"):
                setattr(self.counters, name, getattr(counters, name))
            for path in self._batch_files:
                try:
                    os.unlink(str(path))
                except OSError:
                    pass  # gone already: nothing names it either way
            raise
        self.counters.commits += 1
        self.counters.recorded += len(batch)
        return rows

    def _write_one(self, item: Incoming) -> List[Dict[str, Any]]:
        event = item.event
        if event.get("type") == "stream" and isinstance(event.get("reason"), str):
            event["reason"] = redact_text(event["reason"])
        stream = stream_key(event)
        t = parse_time(event.get("time"), item.received)
        rows = self._track_seq(stream, event, t)
        snapshot, size = self._save_snapshot(stream, event, item.jpeg) if item.jpeg else (None, 0)
        key = str(event.get("prompt") or event.get("question") or "")
        rows.append(self._insert(t, stream, str(event["type"]), key, event.get("phase"),
                                 event.get("boot"), event.get("seq"), searchable_text(event),
                                 snapshot, size, event))
        return rows

    def _insert(self, t: float, stream: str, kind: str, key: str, phase: Any, boot: Any, seq: Any,
                text: Optional[str], snapshot: Optional[str], size: int, body: Dict[str, Any]) -> Dict[str, Any]:
        cur = self.conn.execute(
            "INSERT INTO events (t, stream, type, key, phase, boot, seq, text, snapshot, snapshot_bytes, body)"
            " VALUES (?,?,?,?,?,?,?,?,?,?,?)",
            (t, stream, kind, key, phase if isinstance(phase, str) else None,
             boot if isinstance(boot, str) else None, seq if isinstance(seq, int) else None,
             text, snapshot, size, json.dumps(body, separators=(",", ":"), ensure_ascii=False)))
        row_id = int(cur.lastrowid)
        self.conn.execute("INSERT OR REPLACE INTO latest (stream, type, key, event_id) VALUES (?,?,?,?)",
                          (stream, kind, key, row_id))
        if snapshot:
            self.conn.execute("INSERT OR REPLACE INTO latest (stream, type, key, event_id) VALUES (?,?,?,?)",
                              (stream, "snapshot", "", row_id))
        return {"id": row_id, "t": t, "stream": stream, "type": kind, "key": key,
                "snapshot": bool(snapshot), "body": body}

    def _track_seq(self, stream: str, event: Dict[str, Any], t: float) -> List[Dict[str, Any]]:
        """A seq gap or a new boot becomes a `gap` row before the event, so the page can show it."""
        boot, seq = event.get("boot"), event.get("seq")
        if not isinstance(boot, str) or not isinstance(seq, int):
            return []
        known = self._seqs.get(stream)
        rows = []
        if known is None:
            self.conn.execute("INSERT OR REPLACE INTO streams (stream, boot, seq, first_t, last_t)"
                              " VALUES (?,?,?,?,?)", (stream, boot, seq, t, t))
        else:
            gap: Optional[Dict[str, Any]] = None
            if known.boot != boot:
                self.counters.restarts += 1
                gap = {"type": "gap", "stream": stream, "kind": "restart", "boot": boot,
                       "previous_boot": known.boot, "missed": max(0, seq - 1),
                       "last_seq": known.seq, "seq": seq}
            elif known.seq is not None and seq > known.seq + 1:
                gap = {"type": "gap", "stream": stream, "kind": "missed", "boot": boot,
                       "missed": seq - known.seq - 1, "last_seq": known.seq, "seq": seq}
            if gap is not None:
                self.counters.gaps += 1
                self.counters.missed += gap["missed"]
                gap["time"] = event.get("time")
                rows.append(self._insert(t, stream, "gap", gap["kind"], None, boot, None, None, None, 0, gap))
            self.conn.execute(
                "UPDATE streams SET boot=?, seq=?, last_t=?, missed=missed+?, restarts=restarts+? WHERE stream=?",
                (boot, seq, t, gap["missed"] if gap else 0, 1 if gap and gap["kind"] == "restart" else 0, stream))
        self._seqs[stream] = _StreamSeq(boot, seq)
        return rows

    def _disk_allows_snapshot(self) -> bool:
        now = time.monotonic()
        checked_at, ok = self._free_checked
        if now - checked_at >= 1.0:
            try:
                ok = shutil.disk_usage(str(self.data_dir)).free >= self.min_free_bytes
            except OSError:
                ok = False
            self._free_checked = (now, ok)
        return ok

    def _save_snapshot(self, stream: str, event: Dict[str, Any], jpeg: bytes) -> Tuple[Optional[str], int]:
        if not self.snapshots:
            return None, 0
        if not self._disk_allows_snapshot():
            self.counters.snapshots_skipped_disk += 1
            allowed, skipped = self._limiter.allow("disk")
            if allowed:
                log.warning("free space in %s under %.0f MB: snapshots not written (events still are); "
                            "%d skipped in the last minute", self.data_dir,
                            self.min_free_bytes / 1048576, skipped + 1)
            return None, 0
        # Names come from the bus (any publisher): only safe characters, so no "../" leaves the folder.
        folder = os.path.join(SNAPSHOT_DIR, _file_part(stream.replace("/", "_"), 120),
                              time.strftime("%Y%m%d", time.gmtime()))
        seq = event.get("seq")
        stem = "%s-%s" % (_file_part(str(event.get("boot", "x")), 12),
                          seq if isinstance(seq, int) else int(time.time() * 1e6))
        relative = os.path.join(folder, stem + ".jpg")
        target = self.data_dir / relative
        try:
            if folder not in self._folders:
                target.parent.mkdir(parents=True, exist_ok=True)
                self._folders.add(folder)
            # Written in full before its row is inserted: a kill leaves at worst a file no committed
            # row names, never a row naming half a file. Never over an existing file (the same
            # boot and seq received twice): each row owns its file, so retention deleting one
            # row's file never takes a picture another row still shows.
            try:
                handle = open(str(target), "xb")
            except FileExistsError:
                relative = os.path.join(folder, "%s-%s.jpg" % (stem, uuid.uuid4().hex[:8]))
                target = self.data_dir / relative
                handle = open(str(target), "xb")
            with handle:
                handle.write(jpeg)
        except OSError as exc:
            self._folders.discard(folder)
            self.counters.snapshots_failed += 1
            if self._limiter.allow("write")[0]:
                log.warning("stream %s: snapshot not written to %s: %s", stream, target, exc.strerror or exc)
            return None, 0
        self._batch_files.append(target)
        self.counters.snapshots_written += 1
        self.snapshot_bytes += len(jpeg)
        return relative, len(jpeg)

    # -- retention -----------------------------------------------------------------------

    def used_bytes(self) -> int:
        """Database pages in use plus snapshot files: what max_total_mb bounds."""
        pages = self.conn.execute("PRAGMA page_count").fetchone()[0]
        free = self.conn.execute("PRAGMA freelist_count").fetchone()[0]
        size = self.conn.execute("PRAGMA page_size").fetchone()[0]
        return int((pages - free) * size + self.snapshot_bytes)

    def enforce_retention(self, now: Optional[float] = None, max_chunks: int = 50) -> int:
        """Delete events past max age, then the oldest while over max size; returns rows deleted.

        Works in chunks, each its own transaction, so the recorder is never held for long; what
        is left over is done at the next check.
        """
        cutoff = (time.time() if now is None else now) - self.max_age_s
        deleted = 0
        for _ in range(max_chunks):
            ids = self._delete_chunk("SELECT id, snapshot, snapshot_bytes FROM events WHERE t < ? ORDER BY id LIMIT ?",
                                     (cutoff, _CHUNK))
            deleted += ids
            if ids < _CHUNK:
                break
        for _ in range(max_chunks):
            used = self.used_bytes()
            if used <= self.max_total_bytes:
                break
            ids = self._delete_chunk("SELECT id, snapshot, snapshot_bytes FROM events ORDER BY id LIMIT ?",
                                     (self._oldest_to_drop(used),))
            deleted += ids
            if ids == 0:
                break
        gone = [row[0] for row in self.conn.execute("SELECT stream FROM streams WHERE last_t < ?", (cutoff,))]
        if gone:  # streams silent for longer than the history is kept leave the page too
            self.conn.executemany("DELETE FROM streams WHERE stream = ?", [(name,) for name in gone])
            for name in gone:
                self._seqs.pop(name, None)
        if deleted:
            self.conn.execute("PRAGMA incremental_vacuum")
            self.counters.retention_deleted += deleted
            log.info("retention: deleted %d events", deleted)
        return deleted

    def _oldest_to_drop(self, used: int) -> int:
        """How many of the oldest events likely free the excess (ids approximate the row count)."""
        low, high = self.conn.execute("SELECT MIN(id), MAX(id) FROM events").fetchone()
        if low is None:
            return 0
        per_event = used / float(high - low + 1)
        wanted = (used - self.max_total_bytes) / max(per_event, 1.0)
        return int(min(_CHUNK, max(10, wanted * 1.1)))

    def _delete_chunk(self, select: str, args: Tuple[Any, ...]) -> int:
        rows = self.conn.execute(select, args).fetchall()
        if not rows:
            return 0
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            self.conn.executemany("DELETE FROM events WHERE id=?", [(row[0],) for row in rows])
            self.conn.execute("DELETE FROM latest WHERE event_id <= ? AND event_id NOT IN (SELECT id FROM events)",
                              (rows[-1][0],))
            self.conn.execute("COMMIT")
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        folders = set()
        for _, snapshot, size in rows:
            if snapshot:
                self.snapshot_bytes -= int(size or 0)
                folders.add(os.path.dirname(snapshot))
                try:
                    os.unlink(str(self.data_dir / snapshot))
                except OSError:
                    pass  # already gone (an earlier run deleted it before being killed)
        self._prune(folders)
        return len(rows)

    def _prune(self, folders: Set[str]) -> None:
        """Remove day folders (and then stream folders) the deletions left empty: months of
        retention would otherwise leave one empty folder per stream and day."""
        for folder in sorted(folders):
            for path in (folder, os.path.dirname(folder)):
                if not path or path == SNAPSHOT_DIR:
                    break
                try:
                    os.rmdir(str(self.data_dir / path))
                except OSError:
                    break  # not empty (or already gone): leave it and its parent
                self._folders.discard(path)
