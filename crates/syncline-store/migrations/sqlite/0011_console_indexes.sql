-- What the operator console pages read, indexed so each page is one index range however large
-- the history grows: the newest runs of all pipelines, the runs still running, a run's dead
-- letters, open dead letters counted per pipeline, and the inbox newest first per source.
CREATE INDEX runs_by_start ON runs (started_at, id);
CREATE INDEX runs_by_status ON runs (status);
CREATE INDEX dead_letters_by_run ON dead_letters (run_id, id);
CREATE INDEX dead_letters_open_by_pipeline ON dead_letters (status, pipeline);
CREATE INDEX inbox_by_source ON inbox (source, id);
