-- Which store this is: an id made at creation (a marker file beside a SQLite store keeps it, so
-- a store that disappears or is swapped is noticed), the schema version it was created with,
-- and when.
CREATE TABLE store_info (
    id TEXT PRIMARY KEY,
    schema_version BIGINT NOT NULL,
    created_at TEXT NOT NULL
);
INSERT INTO store_info (id, schema_version, created_at)
    VALUES (md5(random()::text || clock_timestamp()::text), 5, to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'));
