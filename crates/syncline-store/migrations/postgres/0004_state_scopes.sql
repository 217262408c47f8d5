-- A cursor belongs to a pipeline's source and target, and a fingerprint to its target: state
-- written for one database or HubSpot portal must not make a run against another skip rows or
-- records. Rows from before this migration keep an empty source and target until the first run
-- of their pipeline adopts them for its source and target (Store::adopt_unscoped_state).
ALTER TABLE cursors ADD COLUMN source TEXT NOT NULL DEFAULT '';
ALTER TABLE cursors ADD COLUMN target TEXT NOT NULL DEFAULT '';
ALTER TABLE cursors ALTER COLUMN source DROP DEFAULT;
ALTER TABLE cursors ALTER COLUMN target DROP DEFAULT;
ALTER TABLE cursors DROP CONSTRAINT cursors_pkey;
ALTER TABLE cursors ADD PRIMARY KEY (pipeline, source, target);

ALTER TABLE record_hashes ADD COLUMN target TEXT NOT NULL DEFAULT '';
ALTER TABLE record_hashes ALTER COLUMN target DROP DEFAULT;
ALTER TABLE record_hashes DROP CONSTRAINT record_hashes_pkey;
ALTER TABLE record_hashes ADD PRIMARY KEY (pipeline, target, record_key);

-- When a run last showed it was alive (its last commit, or a running serve's count update), so
-- a serve's flow run left `running` by a killed process can be told from a live one.
ALTER TABLE runs ADD COLUMN updated_at TEXT;
