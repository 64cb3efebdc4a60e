-- Store-and-forward of page-mode MESSAGEs (RFC 3428) for offline users, SQLite flavour
-- (keep in step with ../postgres). Delivery order is `seq` within an AoR.
CREATE TABLE stored_messages (
    seq             INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
    -- Stable identity sent as Tandem-Stored-Id on every delivery attempt (duplicate detection).
    stored_id       TEXT    NOT NULL UNIQUE,
    -- The submission's From-tag, Call-ID and CSeq: a retransmitted submission is stored once.
    submit_key      TEXT    NOT NULL UNIQUE,
    aor             TEXT    NOT NULL,
    from_header     TEXT    NOT NULL,
    to_header       TEXT    NOT NULL,
    content_type    TEXT    NOT NULL,
    body            BLOB    NOT NULL,
    submitted_at    INTEGER NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    in_flight_at    INTEGER
);
CREATE INDEX stored_messages_aor_seq ON stored_messages (aor, seq);
CREATE INDEX stored_messages_submitted_at ON stored_messages (submitted_at);
