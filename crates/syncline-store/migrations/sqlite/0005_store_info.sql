-- Which store this is: an id made at creation (a marker file beside a SQLite store keeps it, so
-- a store that disappears or is swapped is noticed), the schema version it was created with,
-- and when.
CREATE TABLE store_info (
    id TEXT PRIMARY KEY,
    schema_version BIGINT NOT NULL,
    created_at TEXT NOT NULL
);
INSERT INTO store_info (id, schema_version, created_at)
    VALUES (lower(hex(randomblob(16))), 5, strftime('%Y-%m-%dT%H:%M:%fZ', 'now'));
