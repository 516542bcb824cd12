-- Full-text search: one FTS5 row per ticket, its rowid the ticket's number. Columns: the
-- subject, the public text (description, replies, customer messages, transcripts) and
-- internal notes; a bot's search names only the first two.
CREATE VIRTUAL TABLE ticket_search USING fts5(
    subject, public_text, internal_text,
    tokenize = 'porter unicode61 remove_diacritics 2'
);

-- Tickets written before search existed, up to 128 KiB of each kind of text (as ticketd
-- keeps it).
INSERT INTO ticket_search (rowid, subject, public_text, internal_text)
SELECT t.number, t.subject,
       substr(t.description || COALESCE((
           SELECT char(10) || group_concat(COALESCE(json_extract(e.payload, '$.body'),
               json_extract(e.payload, '$.text'), json_extract(e.payload, '$.summary')), char(10))
           FROM ticket_events e
           WHERE e.ticket_id = t.id AND e.visibility = 'public'
             AND e.event_type IN ('reply_added', 'transcript_message', 'customer_message',
                                  'conversation_escalated')), ''), 1, 131072),
       substr(COALESCE((
           SELECT group_concat(json_extract(e.payload, '$.body'), char(10))
           FROM ticket_events e
           WHERE e.ticket_id = t.id AND e.visibility = 'internal' AND e.event_type = 'note_added'
       ), ''), 1, 131072)
FROM tickets t;
