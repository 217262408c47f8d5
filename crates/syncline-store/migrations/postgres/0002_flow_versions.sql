-- The newest occurredAt each ordered flow has run per object: an older event is stale.
CREATE TABLE flow_versions (
    flow TEXT NOT NULL,
    object_key TEXT NOT NULL,
    occurred_at TEXT NOT NULL,
    PRIMARY KEY (flow, object_key)
);
