-- Attachment bytes live apart from the attachment records, once per content (by SHA-256):
-- the same file sent twice is stored once. Records keep an empty `content`.
CREATE TABLE attachment_blobs (
    sha256     text PRIMARY KEY,
    size_bytes bigint NOT NULL CHECK (size_bytes >= 0),
    content    bytea NOT NULL,
    created_at timestamptz NOT NULL
);

ALTER TABLE attachments ADD COLUMN sha256 text REFERENCES attachment_blobs (sha256);

INSERT INTO attachment_blobs (sha256, size_bytes, content, created_at)
SELECT DISTINCT ON (encode(sha256(content), 'hex')) encode(sha256(content), 'hex'), size_bytes,
    content, created_at
FROM attachments ORDER BY encode(sha256(content), 'hex'), created_at;

UPDATE attachments SET sha256 = encode(sha256(content), 'hex'), content = ''::bytea;
