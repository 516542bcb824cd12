-- Outbound messages say what they are and whose conversation they answer.
ALTER TABLE outbound_messages ADD COLUMN kind TEXT NOT NULL DEFAULT 'REPLY'
    CHECK (kind IN ('REPLY', 'AUTO_RESPONSE', 'NOTIFICATION'));
ALTER TABLE outbound_messages ADD COLUMN source TEXT NOT NULL DEFAULT '';

UPDATE outbound_messages m SET source = c.source
FROM conversations c
WHERE c.ticket_id = m.ticket_id AND c.external_id = m.conversation_id AND m.conversation_id <> '';
