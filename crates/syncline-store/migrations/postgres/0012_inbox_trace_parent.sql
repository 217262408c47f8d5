-- The W3C `traceparent` of the webhook delivery that stored each event, so the flow that runs
-- it later (on any worker or instance) continues the delivery's trace. NULL without tracing.
ALTER TABLE inbox ADD COLUMN trace_parent TEXT;
