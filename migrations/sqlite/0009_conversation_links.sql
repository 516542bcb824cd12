-- A ticket remembers the conversation it answers (the one most recently linked to it), and
-- every event carries that link, so updates stream back to the conversation's bot or
-- gateway without a lookup per event.
ALTER TABLE tickets ADD COLUMN conversation_source TEXT;
ALTER TABLE tickets ADD COLUMN conversation_external_id TEXT;

UPDATE tickets SET
    conversation_source = (SELECT c.source FROM conversations c WHERE c.ticket_id = tickets.id
        ORDER BY c.updated_at DESC LIMIT 1),
    conversation_external_id = (SELECT c.external_id FROM conversations c
        WHERE c.ticket_id = tickets.id ORDER BY c.updated_at DESC LIMIT 1);

ALTER TABLE ticket_events ADD COLUMN conversation_source TEXT;
ALTER TABLE ticket_events ADD COLUMN conversation_id TEXT;
ALTER TABLE ticket_events ADD COLUMN conversation_channel TEXT;

UPDATE ticket_events SET
    conversation_source = (SELECT t.conversation_source FROM tickets t
        WHERE t.id = ticket_events.ticket_id),
    conversation_id = (SELECT t.conversation_external_id FROM tickets t
        WHERE t.id = ticket_events.ticket_id),
    conversation_channel = (SELECT t.channel FROM tickets t
        WHERE t.id = ticket_events.ticket_id AND t.conversation_source IS NOT NULL);
