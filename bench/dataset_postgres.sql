-- A year of a busy team's tickets, generated in the database: {tickets} tickets over the
-- last 365 days, the 10 queues and 50 agents made through the API ({queues}, {agents}),
-- a Zipf spread of contacts, tags and words, ~8 events per ticket (messages, replies, a
-- note, status changes), SLA outcomes by priority, ratings on a third of the resolved
-- tickets, and the search document of each ticket. `ticketd-bench` fills in the braces.

SELECT setseed(0.42);

-- Words: a few helpdesk words at the top of a Zipf ranking (rank k drawn with weight
-- 1/k), then w21 … w5000. "refund" is in most tickets; "w4999" in about one in a
-- thousand.
CREATE TEMP TABLE vocab AS
SELECT k, CASE WHEN k <= 20 THEN (ARRAY['refund', 'password', 'invoice', 'delivery',
    'login', 'broken', 'order', 'account', 'payment', 'shipping', 'printer', 'upgrade',
    'cancel', 'crash', 'email', 'address', 'discount', 'warranty', 'battery', 'screen'])[k]
    ELSE 'w' || k END AS word
FROM generate_series(1, 5000) k;

-- 100,000 sentences of 12 words, and their search vectors.
CREATE TEMP TABLE sentences AS
SELECT n, (SELECT string_agg(v.word, ' ')
           FROM (SELECT LEAST(5000, floor(exp(random() * ln(5001)))::int + 0 * n) AS r
                 FROM generate_series(1, 12)) g
           JOIN vocab v ON v.k = g.r) AS body
FROM generate_series(0, 99999) n;
ALTER TABLE sentences ADD COLUMN tv tsvector;
UPDATE sentences SET tv = to_tsvector('english', body);
CREATE UNIQUE INDEX ON sentences (n);

CREATE TEMP TABLE contact_ids AS
SELECT k, gen_random_uuid() AS id FROM generate_series(1, {tickets} / 5) k;
INSERT INTO contacts (id, external_id, name, email, phone, vip, created_at, updated_at)
SELECT id, 'crm-' || k, 'Customer ' || k, 'customer' || k || '@example.com', '', k % 100 = 0,
       now() - interval '400 days', now() - interval '400 days'
FROM contact_ids;

-- One row per ticket with every random choice made once.
CREATE TEMP TABLE gen AS
SELECT i, gen_random_uuid() AS id,
       now() - ({tickets} - i) * (365.0 * 86400 / {tickets}) * interval '1 second' AS created_at,
       LEAST({tickets} / 5, floor(exp(random() * ln({tickets} / 5 + 1)))::int) AS contact_rank,
       random() AS r_status, random() AS r_priority, random() AS r_channel, random() AS r_assign,
       random() AS r_rating, random() AS r_score,
       -ln(1 - random()) AS e_first, -ln(1 - random()) AS e_resolve,
       floor(random() * 100000)::int AS s1, floor(random() * 100000)::int AS s2,
       floor(random() * 100000)::int AS s3, floor(random() * 100000)::int AS s4,
       floor(random() * 100000)::int AS s5, floor(random() * 100000)::int AS s6,
       floor(random() * 100000)::int AS s7,
       ARRAY(SELECT DISTINCT LEAST(50, floor(exp(random() * ln(51)))::int + 0 * i)
             FROM generate_series(1, floor(random() * 4)::int)) AS tag_ranks
FROM generate_series(1, {tickets}) i;

ALTER TABLE gen ADD COLUMN age_days float8, ADD COLUMN status text, ADD COLUMN priority text,
    ADD COLUMN first_at timestamptz, ADD COLUMN resolved_at timestamptz;
UPDATE gen SET age_days = extract(epoch FROM now() - created_at) / 86400;
-- A busy team's backlog: a ticket is still active with a chance that halves every day
-- or so (about 1.5 days of volume open at any time); the rest are closed or resolved.
UPDATE gen SET
    status = CASE
        WHEN r_status < exp(-age_days / 1.5) THEN CASE WHEN r_score < 0.5 THEN 'OPEN'
            WHEN r_score < 0.8 THEN 'IN_PROGRESS' ELSE 'WAITING' END
        WHEN r_status < 0.72 THEN 'CLOSED' ELSE 'RESOLVED' END,
    priority = CASE WHEN r_priority < 0.30 THEN 'LOW' WHEN r_priority < 0.75 THEN 'MEDIUM'
        WHEN r_priority < 0.95 THEN 'HIGH' ELSE 'URGENT' END;
-- First responses after an exponential wait (mean 3 h), where there was one; resolutions
-- after a mean of two days, never in the future.
UPDATE gen SET
    first_at = CASE WHEN status = 'OPEN' AND r_assign < 0.5 THEN NULL
        ELSE LEAST(now(), created_at + e_first * interval '3 hours') END,
    resolved_at = CASE WHEN status IN ('RESOLVED', 'CLOSED')
        THEN LEAST(now(), created_at + interval '10 minutes' + e_resolve * interval '2 days') END;

INSERT INTO tickets (id, number, subject, description, status, priority, priority_rank,
    ticket_type, tags, custom_fields, contact_id, assignee_id, queue_id, channel, version,
    time_spent_seconds, created_at, updated_at, satisfaction_score, satisfaction_comment,
    satisfaction_rated_at, resolved_at, first_response_at)
SELECT g.id, g.i, left(s1.body, 80), s2.body, g.status, g.priority,
       CASE g.priority WHEN 'LOW' THEN 1 WHEN 'MEDIUM' THEN 2 WHEN 'HIGH' THEN 3 ELSE 4 END,
       (ARRAY['QUESTION', 'BUG', 'COMPLAINT', 'FEATURE_REQUEST', 'OTHER'])[1 + g.i % 5],
       COALESCE((SELECT jsonb_agg(CASE WHEN t = 1 THEN 'billing' WHEN t = 2 THEN 'bug'
                 WHEN t = 3 THEN 'shipping' ELSE 'tag' || t END) FROM unnest(g.tag_ranks) t), '[]'),
       jsonb_build_object('plan', (ARRAY['free', 'pro', 'enterprise'])[1 + g.i % 3]),
       c.id,
       CASE WHEN g.status = 'OPEN' AND g.r_assign < 0.6 THEN NULL
            ELSE ({agents})[1 + floor(g.r_assign * 50)::int] END,
       ({queues})[1 + g.i % 10],
       CASE WHEN g.r_channel < 0.5 THEN 'EMAIL' WHEN g.r_channel < 0.85 THEN 'CHAT' ELSE 'SMS' END,
       8, 0, g.created_at,
       GREATEST(g.created_at, g.first_at, g.resolved_at),
       CASE WHEN g.resolved_at IS NOT NULL AND g.r_rating < 0.33 THEN
           CASE WHEN g.r_score < 0.50 THEN 5 WHEN g.r_score < 0.75 THEN 4
                WHEN g.r_score < 0.85 THEN 3 WHEN g.r_score < 0.92 THEN 2 ELSE 1 END END,
       CASE WHEN g.resolved_at IS NOT NULL AND g.r_rating < 0.33 THEN '' END,
       CASE WHEN g.resolved_at IS NOT NULL AND g.r_rating < 0.33
            THEN g.resolved_at + interval '1 hour' END,
       g.resolved_at, g.first_at
FROM gen g
JOIN contact_ids c ON c.k = g.contact_rank
JOIN sentences s1 ON s1.n = g.s1
JOIN sentences s2 ON s2.n = g.s2;
SELECT setval('ticket_number_seq', {tickets});

INSERT INTO ticket_tags (ticket_id, tag)
SELECT id, jsonb_array_elements_text(tags) FROM tickets;

-- Eight events per ticket: created, two customer messages, two replies, a note and two
-- status changes, spread between creation and the last change.
INSERT INTO ticket_events (position, id, ticket_id, ticket_number, event_type, actor_kind,
    actor_id, actor_name, visibility, payload, created_at, ticket_status, priority,
    ticket_type, assignee_id, queue_id, contact_id, channel, tags)
SELECT t.number * 8 + e.k, gen_random_uuid(), t.id, t.number,
       (ARRAY['ticket_created', 'customer_message', 'reply_added', 'customer_message',
              'reply_added', 'note_added', 'status_changed', 'status_changed'])[e.k + 1],
       CASE WHEN e.k IN (1, 3) THEN 'customer' WHEN t.assignee_id IS NULL THEN 'system'
            ELSE 'agent' END,
       CASE WHEN e.k IN (1, 3) THEN NULL ELSE t.assignee_id END,
       CASE WHEN e.k IN (1, 3) THEN 'Customer' ELSE 'Agent' END,
       CASE WHEN e.k = 5 THEN 'internal' ELSE 'public' END,
       CASE e.k
           WHEN 0 THEN jsonb_build_object('kind', 'created', 'subject', t.subject,
               'priority', t.priority, 'status', 'OPEN')
           WHEN 2 THEN jsonb_build_object('kind', 'reply', 'body', s.body, 'channel', 'EMAIL',
               'attachments', '[]'::jsonb)
           WHEN 4 THEN jsonb_build_object('kind', 'reply', 'body', s.body, 'channel', 'EMAIL',
               'attachments', '[]'::jsonb)
           WHEN 5 THEN jsonb_build_object('kind', 'note', 'body', s.body)
           WHEN 6 THEN jsonb_build_object('kind', 'fields_changed', 'changes', jsonb_build_array(
               jsonb_build_object('field', 'status', 'old', 'OPEN', 'new', 'IN_PROGRESS')))
           WHEN 7 THEN jsonb_build_object('kind', 'fields_changed', 'changes', jsonb_build_array(
               jsonb_build_object('field', 'status', 'old', 'IN_PROGRESS', 'new', t.status)))
           ELSE jsonb_build_object('kind', 'customer_message', 'channel', 'EMAIL',
               'sender', 'customer', 'text', s.body, 'external_message_id', 'm' || t.number || e.k,
               'attachments', '[]'::jsonb)
       END,
       t.created_at + (t.updated_at - t.created_at) * (e.k / 7.0),
       t.status, t.priority, t.ticket_type, t.assignee_id, t.queue_id, t.contact_id, t.channel,
       t.tags
FROM tickets t
JOIN gen g ON g.id = t.id
CROSS JOIN generate_series(0, 7) e(k)
JOIN sentences s ON s.n = (ARRAY[g.s1, g.s3, g.s4, g.s5, g.s6, g.s7, g.s1, g.s1])[e.k + 1];

-- The search document: the subject (A), description, messages and replies (B), the note
-- (D), as ticketd writes it.
INSERT INTO ticket_search (ticket_id, number, public_text, internal_text, doc)
SELECT g.id, g.i,
       concat_ws(E'\n', s2.body, s3.body, s4.body, s5.body, s6.body), s7.body,
       setweight(to_tsvector('english', t.subject), 'A')
       || setweight(s2.tv || s3.tv || s4.tv || s5.tv || s6.tv, 'B') || setweight(s7.tv, 'D')
FROM gen g
JOIN tickets t ON t.id = g.id
JOIN sentences s2 ON s2.n = g.s2 JOIN sentences s3 ON s3.n = g.s3
JOIN sentences s4 ON s4.n = g.s4 JOIN sentences s5 ON s5.n = g.s5
JOIN sentences s6 ON s6.n = g.s6 JOIN sentences s7 ON s7.n = g.s7;

-- SLA clocks by priority: first response 1/4/8/24 h, resolution 3 days; stopped when the
-- milestone came, running (and possibly overdue) while it has not.
INSERT INTO sla_clocks (ticket_id, metric, warning, target_seconds, used_seconds,
    running_since, stopped, breached, due_at, warn_at, warned, breach_fired, started_at,
    stopped_at)
SELECT t.id, m.metric, '{"kind": "percent", "percent": 80}'::jsonb, m.target,
       LEAST(m.target * 10, GREATEST(0, extract(epoch FROM COALESCE(m.done, now()) - t.created_at)::bigint)),
       CASE WHEN m.done IS NULL THEN t.created_at END,
       m.done IS NOT NULL,
       COALESCE(m.done, now()) > t.created_at + m.target * interval '1 second',
       CASE WHEN m.done IS NULL THEN t.created_at + m.target * interval '1 second' END,
       CASE WHEN m.done IS NULL THEN t.created_at + m.target * interval '0.8 second' END,
       m.done IS NULL AND now() > t.created_at + m.target * interval '0.8 second',
       m.done IS NULL AND now() > t.created_at + m.target * interval '1 second',
       t.created_at, m.done
FROM tickets t
CROSS JOIN LATERAL (VALUES
    ('FIRST_RESPONSE', CASE t.priority WHEN 'URGENT' THEN 3600 WHEN 'HIGH' THEN 14400
        WHEN 'MEDIUM' THEN 28800 ELSE 86400 END, t.first_response_at),
    ('RESOLUTION', 259200, t.resolved_at)) AS m(metric, target, done)
WHERE m.done IS NOT NULL OR t.status IN ('OPEN', 'IN_PROGRESS', 'WAITING');
