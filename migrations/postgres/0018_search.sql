-- Full-text search: one document per ticket. The text is kept to draw snippets from and
-- to rebuild `doc` when the text-search configuration changes; `doc` weighs the subject
-- A, the public text (description, replies, customer messages, transcripts) B and
-- internal notes D, so a bot's search keeps only A and B (`ts_filter`).
CREATE TABLE ticket_search (
    ticket_id     uuid PRIMARY KEY REFERENCES tickets (id),
    number        bigint NOT NULL,
    public_text   text NOT NULL,
    internal_text text NOT NULL,
    doc           tsvector NOT NULL
);
CREATE INDEX ticket_search_doc_idx ON ticket_search USING GIN (doc);
CREATE INDEX ticket_search_number_idx ON ticket_search (number);

-- The configuration `doc` was built with (one row).
CREATE TABLE search_config (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    name      text NOT NULL
);
INSERT INTO search_config (name) VALUES ('english');

-- Tickets written before search existed, up to 128 KiB of each kind of text (as ticketd
-- keeps it).
INSERT INTO ticket_search (ticket_id, number, public_text, internal_text, doc)
SELECT t.id, t.number, x.public_text, x.internal_text,
       setweight(to_tsvector('english', t.subject), 'A')
       || setweight(to_tsvector('english', x.public_text), 'B')
       || setweight(to_tsvector('english', x.internal_text), 'D')
FROM tickets t
CROSS JOIN LATERAL (
    SELECT
        left(concat_ws(E'\n', t.description, string_agg(
            COALESCE(e.payload ->> 'body', e.payload ->> 'text', e.payload ->> 'summary'),
            E'\n' ORDER BY e.position) FILTER (WHERE e.visibility = 'public')), 131072)
            AS public_text,
        left(COALESCE(string_agg(e.payload ->> 'body', E'\n' ORDER BY e.position)
            FILTER (WHERE e.visibility = 'internal' AND e.event_type = 'note_added'), ''), 131072)
            AS internal_text
    FROM ticket_events e
    WHERE e.ticket_id = t.id
      AND e.event_type IN ('reply_added', 'note_added', 'transcript_message',
                           'customer_message', 'conversation_escalated')
) x;
