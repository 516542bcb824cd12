-- Consumer groups remember when a subscriber last showed up, so idle groups can expire.
ALTER TABLE channel_consumers ADD COLUMN last_seen_at timestamptz;
UPDATE channel_consumers SET last_seen_at = created_at;
ALTER TABLE channel_consumers ALTER COLUMN last_seen_at SET NOT NULL;
CREATE INDEX channel_consumers_seen_idx ON channel_consumers (last_seen_at);
