-- The write transaction of CreateTicket, as ticketd runs it on PostgreSQL: contact upsert,
-- the contact's address made findable, ticket with a sequence number, its created event at a
-- transaction-ordered position, and its two SLA clocks. Run by ticketd-bench through pgbench
-- as the database baseline.
\set n random(1, 1000000000)
BEGIN;
INSERT INTO contacts (id, external_id, name, email, phone, vip, created_at, updated_at)
  VALUES (gen_random_uuid(), 'bench-' || :n, 'Bench', 'bench@example.com', '', false, now(), now())
  ON CONFLICT (external_id) DO UPDATE SET
    name = CASE WHEN excluded.name = '' THEN contacts.name ELSE excluded.name END,
    email = CASE WHEN excluded.email = '' THEN contacts.email ELSE excluded.email END,
    phone = CASE WHEN excluded.phone = '' THEN contacts.phone ELSE excluded.phone END,
    updated_at = excluded.updated_at,
    version = contacts.version + CASE WHEN excluded.name <> contacts.name
      OR excluded.email <> contacts.email THEN 1 ELSE 0 END
  RETURNING id AS contact_id, external_id, name, email, phone, vip \gset
INSERT INTO contact_identities (kind, value, contact_id, created_at)
  VALUES ('email', 'bench@example.com', :contact_id, now()) ON CONFLICT DO NOTHING;
INSERT INTO tickets (id, number, subject, description, status, priority, priority_rank,
    ticket_type, tags, custom_fields, contact_id, assignee_id, queue_id, channel,
    follow_up_of_id, tier, required_skills, vip_handlers_only, version, time_spent_seconds,
    created_at, updated_at)
  VALUES (gen_random_uuid(), nextval('ticket_number_seq'), 'Bench ticket', 'created by pgbench',
    'OPEN', 'MEDIUM', 2, 'QUESTION', '[]', '{}', :contact_id, NULL, NULL, NULL, NULL, 1, '[]',
    false, 1, 0, now(), now())
  RETURNING id AS ticket_id, number AS ticket_number \gset
INSERT INTO ticket_events (position, id, ticket_id, ticket_number, event_type, actor_kind,
    actor_id, actor_name, visibility, payload, created_at, ticket_status, priority, ticket_type,
    assignee_id, queue_id, contact_id, channel, tags)
  VALUES ((pg_current_xact_id()::text::bigint << 20), gen_random_uuid(), :ticket_id,
    :ticket_number, 'ticket_created', 'api_key', NULL, 'bench', 'internal',
    '{"kind": "created", "subject": "Bench ticket", "priority": "MEDIUM", "status": "OPEN"}',
    now(), 'OPEN', 'MEDIUM', 'QUESTION', NULL, NULL, :contact_id, NULL, '[]');
INSERT INTO sla_clocks (ticket_id, metric, policy_id, calendar_id, warning, target_seconds,
    used_seconds, running_since, stopped, breached, due_at, warn_at, warned, breach_fired,
    started_at, stopped_at)
  VALUES (:ticket_id, 'FIRST_RESPONSE', NULL, NULL, '{"kind": "percent", "percent": 80}',
      86400, 0, now(), false, false, now() + interval '24 hours', now() + interval '19 hours',
      false, false, now(), NULL),
    (:ticket_id, 'RESOLUTION', NULL, NULL, '{"kind": "percent", "percent": 80}',
      259200, 0, now(), false, false, now() + interval '72 hours', now() + interval '58 hours',
      false, false, now(), NULL)
  ON CONFLICT (ticket_id, metric) DO UPDATE SET used_seconds = excluded.used_seconds;
COMMIT;
