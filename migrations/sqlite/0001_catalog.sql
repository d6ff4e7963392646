-- The universal catalog: every format stores its artifacts as entries (repo, path) -> blob.
CREATE TABLE entries (
    repo        TEXT    NOT NULL,
    path        TEXT    NOT NULL,
    digest      TEXT    NOT NULL,
    blob        TEXT    NOT NULL,
    size        INTEGER NOT NULL,
    media_type  TEXT,
    package     TEXT,
    refers_to   TEXT,
    attrs       TEXT    NOT NULL DEFAULT '{}',
    created_at  INTEGER NOT NULL,
    checked_at  INTEGER NOT NULL,
    etag        TEXT,
    PRIMARY KEY (repo, path)
) WITHOUT ROWID;

CREATE INDEX entries_by_package ON entries (repo, package);
CREATE INDEX entries_by_ref ON entries (repo, refers_to) WHERE refers_to IS NOT NULL;
CREATE INDEX entries_by_blob ON entries (blob);

-- Resumable uploads; the bytes live in the blob store's upload area under the same id.
CREATE TABLE uploads (
    id          TEXT    PRIMARY KEY,
    repo        TEXT    NOT NULL,
    package     TEXT    NOT NULL,
    created_at  INTEGER NOT NULL
);
