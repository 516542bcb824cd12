-- Attachment bytes live apart from the attachment records, once per content (by SHA-256):
-- the same file sent twice is stored once. New records keep an empty `content`; records
-- from before keep theirs inline (SQLite has no SHA-256 to move them with).
CREATE TABLE attachment_blobs (
    sha256     TEXT PRIMARY KEY,
    size_bytes INTEGER NOT NULL CHECK (size_bytes >= 0),
    content    BLOB NOT NULL,
    created_at TEXT NOT NULL
);

ALTER TABLE attachments ADD COLUMN sha256 TEXT REFERENCES attachment_blobs (sha256);
