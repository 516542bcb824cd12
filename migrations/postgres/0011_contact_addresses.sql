-- Intake finds a writer's contact by email address (any case) or phone number.
CREATE INDEX contacts_email_idx ON contacts (lower(email)) WHERE email <> '';
CREATE INDEX contacts_phone_idx ON contacts (phone) WHERE phone <> '';
