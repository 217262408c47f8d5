-- Which process runs a pipeline now: one lease per pipeline, renewed while the run goes on,
-- released at its end; a holder that dies leaves it to expire at `until`.
CREATE TABLE run_leases (
    pipeline TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    since TEXT NOT NULL,
    until TEXT NOT NULL
);
