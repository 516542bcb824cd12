-- A ticket remembers the conversation it answers (the one most recently linked to it), and
-- every event carries that link, so updates stream back to the conversation's bot or
-- gateway without a lookup per event.
ALTER TABLE tickets
    ADD COLUMN conversation_source text,
    ADD COLUMN conversation_external_id text,
    ADD COLUMN conversation_channel text;

UPDATE tickets t SET conversation_source = c.source, conversation_external_id = c.external_id,
    conversation_channel = c.channel
FROM (
    SELECT DISTINCT ON (ticket_id) ticket_id, source, external_id, channel
    FROM conversations ORDER BY ticket_id, updated_at DESC, id DESC
) c
WHERE c.ticket_id = t.id;

ALTER TABLE ticket_events
    ADD COLUMN conversation_source text,
    ADD COLUMN conversation_id text,
    ADD COLUMN conversation_channel text;

UPDATE ticket_events e SET conversation_source = t.conversation_source,
    conversation_id = t.conversation_external_id, conversation_channel = t.conversation_channel
FROM tickets t
WHERE t.id = e.ticket_id AND t.conversation_source IS NOT NULL;
