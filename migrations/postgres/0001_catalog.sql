-- The universal catalog (same shape as migrations/sqlite): every format stores its artifacts as
-- entries (repo, path) -> blob. Text columns use the "C" collation so that ordering and prefix
-- ranges compare bytes, exactly like SQLite.
CREATE TABLE entries (
    repo        TEXT COLLATE "C" NOT NULL,
    path        TEXT COLLATE "C" NOT NULL,
    digest      TEXT   NOT NULL,
    blob        TEXT   NOT NULL,
    size        BIGINT NOT NULL,
    media_type  TEXT,
    package     TEXT COLLATE "C",
    refers_to   TEXT,
    attrs       TEXT   NOT NULL DEFAULT '{}',
    created_at  BIGINT NOT NULL,
    checked_at  BIGINT NOT NULL,
    etag        TEXT,
    PRIMARY KEY (repo, path)
);

CREATE INDEX entries_by_package ON entries (repo, package);
CREATE INDEX entries_by_ref ON entries (repo, refers_to) WHERE refers_to IS NOT NULL;
CREATE INDEX entries_by_blob ON entries (blob);

-- Resumable uploads; the bytes live in the blob store's upload area under the same id.
CREATE TABLE uploads (
    id          TEXT   PRIMARY KEY,
    repo        TEXT   NOT NULL,
    package     TEXT   NOT NULL,
    created_at  BIGINT NOT NULL
);
