-- What a run's source checked of its read once it read to the end (a HubSpot source: search's
-- count of the range read against the objects it returned), beside the run's counts.
ALTER TABLE runs ADD COLUMN audit TEXT;
