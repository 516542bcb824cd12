-- Indexes that keep agent consoles and reports fast on a million tickets (see the
-- README's "Benchmarks"):
--
-- Active tickets (the predefined views, counts of them): a small partial index, read in
-- creation order or counted without visiting the table.
CREATE INDEX tickets_active_idx ON tickets (created_at, number)
    WHERE status IN ('OPEN', 'IN_PROGRESS', 'WAITING');

-- Running clocks by due time, breach announced or not: the "overdue" view.
CREATE INDEX sla_clocks_running_idx ON sla_clocks (due_at, ticket_id)
    WHERE running_since IS NOT NULL AND NOT stopped;

-- Reports read a period of one milestone and group by a ticket field: each milestone's
-- index carries those fields, so a report reads the index alone.
DROP INDEX tickets_created_idx;
CREATE INDEX tickets_created_idx ON tickets (created_at, number)
    INCLUDE (status, queue_id, assignee_id, priority, channel, ticket_type);
DROP INDEX tickets_resolved_idx;
CREATE INDEX tickets_resolved_idx ON tickets (resolved_at)
    INCLUDE (created_at, status, queue_id, assignee_id, priority, channel, ticket_type)
    WHERE resolved_at IS NOT NULL;
DROP INDEX tickets_first_response_idx;
CREATE INDEX tickets_first_response_idx ON tickets (first_response_at)
    INCLUDE (created_at, status, queue_id, assignee_id, priority, channel, ticket_type)
    WHERE first_response_at IS NOT NULL;
