-- Rate budgets several processes spend together: each row is one budget's limiter (JSON: its
-- recent permits and what others were seen to spend, in microseconds since the Unix epoch),
-- locked, read and written back for every permit. Only PostgreSQL stores share them; the table
-- exists on SQLite so both schemas stay the same.
CREATE TABLE rate_budgets (
    name TEXT PRIMARY KEY,
    state TEXT NOT NULL
);
