"""The console database's schema, versioned with `PRAGMA user_version` and migrated step by step.

Each migration takes the database from version N-1 to N inside one transaction; a database newer
than this code knows is refused rather than guessed at. Searchable text (captions, answers with
their question, the prompt text of a match start) goes into an FTS5 index kept by triggers.
"""
import sqlite3
from typing import List

from daemon.errors import DaemonError


class StoreError(DaemonError):
    """The console's database cannot be opened, migrated or written (one line, naming the file)."""


_V1 = """
        CREATE TABLE events (
            id INTEGER PRIMARY KEY,
            t REAL NOT NULL,            -- event time, epoch seconds
            stream TEXT NOT NULL,       -- 'source/stream' when the event has a source
            type TEXT NOT NULL,         -- caption match answer stream stats, or gap (recorder)
            key TEXT NOT NULL DEFAULT '',   -- prompt or question id
            phase TEXT,
            boot TEXT,
            seq INTEGER,
            text TEXT,                  -- what the search index holds (NULL: not searchable)
            snapshot TEXT,              -- JPEG path relative to the data folder
            snapshot_bytes INTEGER NOT NULL DEFAULT 0,
            body TEXT NOT NULL          -- the event JSON as received (reason redacted)
        );
        CREATE INDEX events_t ON events(t);
        CREATE INDEX events_stream ON events(stream, id);
        CREATE INDEX events_type ON events(type, id);
        CREATE TABLE latest (
            stream TEXT NOT NULL, type TEXT NOT NULL, key TEXT NOT NULL, event_id INTEGER NOT NULL,
            PRIMARY KEY (stream, type, key)
        ) WITHOUT ROWID;
        CREATE TABLE streams (
            stream TEXT PRIMARY KEY, boot TEXT, seq INTEGER, first_t REAL, last_t REAL,
            missed INTEGER NOT NULL DEFAULT 0, restarts INTEGER NOT NULL DEFAULT 0
        );
        -- Contentless: the text lives in events. `tags` holds the type and stream as single tokens
        -- ('tcaption s6761746', the stream's name in hex) so filters narrow the search inside the
        -- index (posting lists intersected) instead of joining every match of a common word.
        -- detail=column: no word positions (searches are words, not phrases): a smaller, faster index.
        CREATE VIRTUAL TABLE events_fts USING fts5(text, tags, content='', detail=column);
        CREATE TRIGGER events_ai AFTER INSERT ON events WHEN new.text IS NOT NULL BEGIN
            INSERT INTO events_fts(rowid, text, tags)
            VALUES (new.id, new.text, 't' || new.type || ' s' || lower(hex(new.stream)));
        END;
        CREATE TRIGGER events_ad AFTER DELETE ON events WHEN old.text IS NOT NULL BEGIN
            INSERT INTO events_fts(events_fts, rowid, text, tags)
            VALUES ('delete', old.id, old.text, 't' || old.type || ' s' || lower(hex(old.stream)));
        END;
"""

MIGRATIONS: List[str] = [_V1]
"""MIGRATIONS[i] upgrades version i to i + 1; append, never edit a released one."""

VERSION = len(MIGRATIONS)


def migrate(conn: sqlite3.Connection, source: str) -> int:
    """Bring the database to VERSION; returns the version found. Refuses a newer database."""
    found = int(conn.execute("PRAGMA user_version").fetchone()[0])
    if found > VERSION:
        raise StoreError("%s: database schema %d is newer than this blipd (%d); upgrade blipd"
                         % (source, found, VERSION))
    if found == 0:
        conn.execute("PRAGMA auto_vacuum=INCREMENTAL")  # only takes on an empty database
    for version in range(found, VERSION):
        # One script, one transaction: executescript() would commit a transaction begun outside it.
        script = "BEGIN IMMEDIATE;\n%s\nPRAGMA user_version=%d;\nCOMMIT;" % (MIGRATIONS[version], version + 1)
        try:
            conn.executescript(script)
        except sqlite3.Error as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise StoreError("%s: migrating to schema %d failed: %s" % (source, version + 1, exc)) from None
    return found
