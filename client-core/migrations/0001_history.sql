-- Local history of a Tandem client: instant messages and calls.
CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    account TEXT NOT NULL,
    peer TEXT NOT NULL,
    direction TEXT NOT NULL CHECK (direction IN ('in', 'out')),
    message_id TEXT NOT NULL,
    content_type TEXT NOT NULL,
    body BLOB NOT NULL,
    text TEXT,
    datetime TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT '',
    UNIQUE (peer, direction, message_id)
);
CREATE INDEX IF NOT EXISTS messages_peer ON messages (peer, id);

CREATE TABLE IF NOT EXISTS calls (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    account TEXT NOT NULL,
    peer TEXT NOT NULL,
    direction TEXT NOT NULL CHECK (direction IN ('in', 'out')),
    call_id TEXT NOT NULL,
    started_at TEXT NOT NULL,
    duration_secs INTEGER NOT NULL DEFAULT 0,
    outcome TEXT NOT NULL,
    UNIQUE (call_id, direction)
);
CREATE INDEX IF NOT EXISTS calls_peer ON calls (peer, id);
