-- Routing rules, calendars and SLA policies carry a version, so an update can be made
-- conditional on what the caller read (the etag).
ALTER TABLE routing_rules ADD COLUMN version bigint NOT NULL DEFAULT 1;
ALTER TABLE calendars ADD COLUMN version bigint NOT NULL DEFAULT 1;
ALTER TABLE sla_policies ADD COLUMN version bigint NOT NULL DEFAULT 1;
