-- What the operator console pages read, indexed so each page is one index range however large
-- the history grows: the newest runs of all pipelines, the runs still running, a run's dead
-- letters, dead letters of one status newest first, and the inbox newest first per source.
CREATE INDEX runs_by_start ON runs (started_at, id);
CREATE INDEX runs_by_status ON runs (status);
CREATE INDEX dead_letters_by_run ON dead_letters (run_id, id);
CREATE INDEX dead_letters_by_status_id ON dead_letters (status, id);
CREATE INDEX inbox_by_source ON inbox (source, id);
