-- Tandem lab server schema, SQLite flavour (keep in step with ../postgres).

-- Digest credentials: HA1 = H(username ":" realm ":" password), realm = domain. Never the password.
CREATE TABLE users (
    username   TEXT    NOT NULL,
    domain     TEXT    NOT NULL,
    ha1_md5    TEXT    NOT NULL,
    ha1_sha256 TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (username, domain)
);

-- Registrations (RFC 3261 §10): one row per (address-of-record, contact).
CREATE TABLE bindings (
    aor        TEXT    NOT NULL,
    contact    TEXT    NOT NULL,
    expires_at INTEGER NOT NULL,
    q          REAL,
    call_id    TEXT    NOT NULL,
    cseq       INTEGER NOT NULL,
    flow       TEXT,
    user_agent TEXT,
    instance   TEXT,
    reg_id     INTEGER,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (aor, contact)
);
CREATE INDEX bindings_expires_at ON bindings (expires_at);

-- Call detail records, one per call (INVITE Call-ID).
CREATE TABLE cdrs (
    call_id   TEXT    NOT NULL PRIMARY KEY,
    caller    TEXT    NOT NULL,
    callee    TEXT    NOT NULL,
    start_at  INTEGER NOT NULL,
    answer_at INTEGER,
    end_at    INTEGER,
    cause     TEXT    NOT NULL,
    status    INTEGER
);
CREATE INDEX cdrs_start_at ON cdrs (start_at);

-- Small server state (e.g. whether the demo users were created).
CREATE TABLE meta (
    key   TEXT NOT NULL PRIMARY KEY,
    value TEXT NOT NULL
);
