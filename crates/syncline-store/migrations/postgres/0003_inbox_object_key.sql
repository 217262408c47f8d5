-- The object an event is about (HubSpot portal:objectId, Stripe object id): one object's events
-- are never claimed while another of them is running.
ALTER TABLE inbox ADD COLUMN object_key TEXT;
CREATE INDEX inbox_object ON inbox (object_key, status);
