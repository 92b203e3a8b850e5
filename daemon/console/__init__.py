"""`blipd console`: records the events of one or more daemon buses in SQLite and serves a web page and an HTTP API."""
