-- XCAP documents (RFC 4825), PostgreSQL flavour (keep in step with ../sqlite).
-- One row per whole document: application usage, user (XUI, the AoR `user@domain`) and document name.
CREATE TABLE xcap_documents (
    auid         TEXT   NOT NULL,
    xui          TEXT   NOT NULL,
    name         TEXT   NOT NULL,
    etag         TEXT   NOT NULL,
    content_type TEXT   NOT NULL,
    body         BYTEA  NOT NULL,
    updated_at   BIGINT NOT NULL,
    PRIMARY KEY (auid, xui, name)
);
CREATE INDEX xcap_documents_xui ON xcap_documents (xui);
