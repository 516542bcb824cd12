-- Contacts as a resource: a version for etags, and every email address and phone number
-- a contact is known by (one primary of each, mirrored in contacts.email and .phone).
-- An address belongs to one contact; intake finds contacts by it.
ALTER TABLE contacts ADD COLUMN version INTEGER NOT NULL DEFAULT 1;

CREATE TABLE contact_identities (
    kind       TEXT NOT NULL CHECK (kind IN ('email', 'phone')),
    value      TEXT NOT NULL,
    contact_id BLOB NOT NULL REFERENCES contacts (id),
    created_at TEXT NOT NULL,
    PRIMARY KEY (kind, value)
);
CREATE INDEX contact_identities_contact_idx ON contact_identities (contact_id);

-- Existing addresses; where two contacts share one, the older keeps it.
INSERT OR IGNORE INTO contact_identities (kind, value, contact_id, created_at)
SELECT 'email', lower(trim(email)), id, created_at FROM contacts WHERE trim(email) <> ''
ORDER BY created_at, id;
INSERT OR IGNORE INTO contact_identities (kind, value, contact_id, created_at)
SELECT 'phone', trim(phone), id, created_at FROM contacts WHERE trim(phone) <> ''
ORDER BY created_at, id;
