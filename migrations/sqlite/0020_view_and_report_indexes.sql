-- Indexes that keep agent consoles fast (see migrations/postgres/0020, which also makes
-- the report indexes covering; SQLite has no INCLUDE).
CREATE INDEX tickets_active_idx ON tickets (created_at, number)
    WHERE status IN ('OPEN', 'IN_PROGRESS', 'WAITING');
CREATE INDEX sla_clocks_running_idx ON sla_clocks (due_at, ticket_id)
    WHERE running_since IS NOT NULL AND NOT stopped;
