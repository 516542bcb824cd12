-- What reports measure per ticket, kept on the ticket by every change: when it last
-- became resolved (NULL while active) and when a person first replied in public.
ALTER TABLE tickets ADD COLUMN resolved_at timestamptz;
ALTER TABLE tickets ADD COLUMN first_response_at timestamptz;

-- Tickets from before: the last change of a done ticket stands in for its resolution.
UPDATE tickets SET resolved_at = updated_at
WHERE status IN ('RESOLVED', 'CLOSED', 'MERGED');
UPDATE tickets t SET first_response_at = r.at
FROM (SELECT ticket_id, MIN(created_at) AS at FROM ticket_events
      WHERE event_type = 'reply_added' AND actor_kind NOT IN ('workflow', 'system')
      GROUP BY ticket_id) r
WHERE r.ticket_id = t.id;

-- Reports read a period of one milestone; these keep that a range scan.
CREATE INDEX tickets_resolved_idx ON tickets (resolved_at) WHERE resolved_at IS NOT NULL;
CREATE INDEX tickets_first_response_idx ON tickets (first_response_at)
    WHERE first_response_at IS NOT NULL;
CREATE INDEX tickets_rated_idx ON tickets (satisfaction_rated_at)
    WHERE satisfaction_rated_at IS NOT NULL;
CREATE INDEX sla_clocks_settled_idx ON sla_clocks (stopped_at) WHERE stopped_at IS NOT NULL;
CREATE INDEX sla_clocks_breached_idx ON sla_clocks (due_at) WHERE breached;
CREATE INDEX time_entries_created_idx ON time_entries (created_at);
