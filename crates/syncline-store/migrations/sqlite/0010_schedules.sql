-- Scheduled pipelines: the latest slot of each one's schedule that ran (or was passed over,
-- when several were missed), and the run it started. A slot is marked only when its run ends,
-- under the pipeline's run lease, so an instance killed mid-run leaves it for another.
CREATE TABLE schedules (
    pipeline TEXT PRIMARY KEY,
    slot TEXT NOT NULL,
    run_id TEXT
);
