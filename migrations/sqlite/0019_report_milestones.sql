-- What reports measure per ticket, kept on the ticket by every change: when it last
-- became resolved (NULL while active) and when a person first replied in public.
ALTER TABLE tickets ADD COLUMN resolved_at TEXT;
ALTER TABLE tickets ADD COLUMN first_response_at TEXT;

-- Tickets from before: the last change of a done ticket stands in for its resolution.
UPDATE tickets SET resolved_at = updated_at
WHERE status IN ('RESOLVED', 'CLOSED', 'MERGED');
UPDATE tickets SET first_response_at = (
    SELECT MIN(e.created_at) FROM ticket_events e
    WHERE e.ticket_id = tickets.id AND e.event_type = 'reply_added'
      AND e.actor_kind NOT IN ('workflow', 'system'));

-- Reports read a period of one milestone; these keep that a range scan.
CREATE INDEX tickets_resolved_idx ON tickets (resolved_at) WHERE resolved_at IS NOT NULL;
CREATE INDEX tickets_first_response_idx ON tickets (first_response_at)
    WHERE first_response_at IS NOT NULL;
CREATE INDEX tickets_rated_idx ON tickets (satisfaction_rated_at)
    WHERE satisfaction_rated_at IS NOT NULL;
CREATE INDEX sla_clocks_settled_idx ON sla_clocks (stopped_at) WHERE stopped_at IS NOT NULL;
CREATE INDEX sla_clocks_breached_idx ON sla_clocks (due_at) WHERE breached;
CREATE INDEX time_entries_created_idx ON time_entries (created_at);
