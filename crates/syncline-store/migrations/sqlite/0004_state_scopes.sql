-- A cursor belongs to a pipeline's source and target, and a fingerprint to its target: state
-- written for one database or HubSpot portal must not make a run against another skip rows or
-- records. Rows from before this migration keep an empty source and target until the first run
-- of their pipeline adopts them for its source and target (Store::adopt_unscoped_state).
CREATE TABLE cursors_scoped (
    pipeline TEXT NOT NULL,
    source TEXT NOT NULL,
    target TEXT NOT NULL,
    cursor TEXT NOT NULL,
    run_id TEXT,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (pipeline, source, target)
);
INSERT INTO cursors_scoped (pipeline, source, target, cursor, run_id, updated_at)
    SELECT pipeline, '', '', cursor, run_id, updated_at FROM cursors;
DROP TABLE cursors;
ALTER TABLE cursors_scoped RENAME TO cursors;

CREATE TABLE record_hashes_scoped (
    pipeline TEXT NOT NULL,
    target TEXT NOT NULL,
    record_key TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (pipeline, target, record_key)
);
INSERT INTO record_hashes_scoped (pipeline, target, record_key, fingerprint, updated_at)
    SELECT pipeline, '', record_key, fingerprint, updated_at FROM record_hashes;
DROP TABLE record_hashes;
ALTER TABLE record_hashes_scoped RENAME TO record_hashes;

-- When a run last showed it was alive (its last commit, or a running serve's count update), so
-- a serve's flow run left `running` by a killed process can be told from a live one.
ALTER TABLE runs ADD COLUMN updated_at TEXT;
