-- Which object of a target service stands for which record key (a QuickBooks item for a
-- Stripe product), so a record finds its object again however its name changes.
CREATE TABLE remote_ids (
    target TEXT NOT NULL,
    record_key TEXT NOT NULL,
    remote_id TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (target, record_key)
);
