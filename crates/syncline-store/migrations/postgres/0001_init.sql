-- syncline state store, PostgreSQL. Timestamps are UTC ISO 8601 text (sortable); JSON is text.
CREATE TABLE runs (
    id TEXT PRIMARY KEY,
    pipeline TEXT NOT NULL,
    mode TEXT NOT NULL,
    status TEXT NOT NULL,
    started_at TEXT NOT NULL,
    finished_at TEXT,
    read_count BIGINT NOT NULL DEFAULT 0,
    created_count BIGINT NOT NULL DEFAULT 0,
    updated_count BIGINT NOT NULL DEFAULT 0,
    unchanged_count BIGINT NOT NULL DEFAULT 0,
    rejected_count BIGINT NOT NULL DEFAULT 0,
    failed_count BIGINT NOT NULL DEFAULT 0,
    error TEXT
);
CREATE INDEX runs_by_pipeline ON runs (pipeline, started_at);

CREATE TABLE cursors (
    pipeline TEXT PRIMARY KEY,
    cursor TEXT NOT NULL,
    run_id TEXT,
    updated_at TEXT NOT NULL
);

CREATE TABLE dead_letters (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    pipeline TEXT NOT NULL,
    record_key TEXT NOT NULL,
    class TEXT NOT NULL,
    field TEXT NOT NULL,
    rule TEXT NOT NULL,
    message TEXT NOT NULL,
    payload TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'open',
    attempts BIGINT NOT NULL DEFAULT 1,
    run_id TEXT,
    first_seen_at TEXT NOT NULL,
    last_seen_at TEXT NOT NULL,
    closed_at TEXT
);
-- at most one open dead letter per record: a record rejected again updates it
CREATE UNIQUE INDEX dead_letters_one_open ON dead_letters (pipeline, record_key) WHERE status = 'open';
CREATE INDEX dead_letters_by_status ON dead_letters (pipeline, status, id);

CREATE TABLE record_hashes (
    pipeline TEXT NOT NULL,
    record_key TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (pipeline, record_key)
);

CREATE TABLE events (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at TEXT NOT NULL,
    kind TEXT NOT NULL,
    subject TEXT NOT NULL,
    run_id TEXT,
    detail TEXT NOT NULL
);

CREATE TABLE idempotency (
    key TEXT PRIMARY KEY,
    result TEXT NOT NULL,
    created_at TEXT NOT NULL,
    expires_at TEXT NOT NULL
);

CREATE TABLE inbox (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    source TEXT NOT NULL,
    dedupe_key TEXT NOT NULL UNIQUE,
    event_type TEXT NOT NULL,
    payload TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'pending',
    attempts BIGINT NOT NULL DEFAULT 0,
    occurred_at TEXT,
    received_at TEXT NOT NULL,
    next_attempt_at TEXT NOT NULL,
    lease_owner TEXT,
    lease_until TEXT,
    last_error TEXT
);
CREATE INDEX inbox_ready ON inbox (status, next_attempt_at);

CREATE TABLE oauth_tokens (
    provider TEXT NOT NULL,
    account TEXT NOT NULL,
    access_token TEXT NOT NULL,
    refresh_token TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (provider, account)
);
