-- Voicemail (media server), PostgreSQL flavour (keep in step with ../sqlite).
-- Mailbox settings per local user; a user without a row has voicemail enabled with the default PIN.
CREATE TABLE voicemail_boxes (
    username   TEXT   NOT NULL PRIMARY KEY,
    enabled    BIGINT NOT NULL DEFAULT 1,
    -- hex SHA-256 of "username:pin"; NULL = the configured default PIN
    pin_hash   TEXT,
    -- the recorded greeting file, NULL = the default prompt
    greeting   TEXT,
    updated_at BIGINT NOT NULL
);
-- One row per message; the audio lives in the file at `path`.
CREATE TABLE voicemail_messages (
    id          TEXT   NOT NULL PRIMARY KEY,
    mailbox     TEXT   NOT NULL,
    caller      TEXT   NOT NULL,
    caller_name TEXT,
    received_at BIGINT NOT NULL,
    duration_ms BIGINT NOT NULL,
    path        TEXT   NOT NULL,
    is_new      BIGINT NOT NULL DEFAULT 1
);
CREATE INDEX voicemail_messages_mailbox ON voicemail_messages (mailbox, received_at);
