-- Outbound messages say what they are and whose conversation they answer.
ALTER TABLE outbound_messages ADD COLUMN kind TEXT NOT NULL DEFAULT 'REPLY'
    CHECK (kind IN ('REPLY', 'AUTO_RESPONSE', 'NOTIFICATION'));
ALTER TABLE outbound_messages ADD COLUMN source TEXT NOT NULL DEFAULT '';

UPDATE outbound_messages SET source = COALESCE((SELECT c.source FROM conversations c
    WHERE c.ticket_id = outbound_messages.ticket_id
      AND c.external_id = outbound_messages.conversation_id LIMIT 1), '')
WHERE conversation_id <> '';
