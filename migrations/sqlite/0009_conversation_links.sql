-- A ticket remembers the conversation it answers (the one most recently linked to it), and
-- every event carries that link, so updates stream back to the conversation's bot or
-- gateway without a lookup per event.
ALTER TABLE tickets ADD COLUMN conversation_source TEXT;
ALTER TABLE tickets ADD COLUMN conversation_external_id TEXT;
ALTER TABLE tickets ADD COLUMN conversation_channel TEXT;

UPDATE tickets SET
    conversation_source = c.source,
    conversation_external_id = c.external_id,
    conversation_channel = c.channel
FROM (
    SELECT ticket_id, source, external_id, channel,
        row_number() OVER (PARTITION BY ticket_id ORDER BY updated_at DESC, id DESC) AS n
    FROM conversations
) c
WHERE c.ticket_id = tickets.id AND c.n = 1;

ALTER TABLE ticket_events ADD COLUMN conversation_source TEXT;
ALTER TABLE ticket_events ADD COLUMN conversation_id TEXT;
ALTER TABLE ticket_events ADD COLUMN conversation_channel TEXT;

UPDATE ticket_events SET
    conversation_source = t.conversation_source,
    conversation_id = t.conversation_external_id,
    conversation_channel = t.conversation_channel
FROM tickets t
WHERE t.id = ticket_events.ticket_id AND t.conversation_source IS NOT NULL;
