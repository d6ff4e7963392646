-- A random token the nodes of one cluster share (created by the first node that needs it);
-- nodes present it to each other's internal endpoint.
CREATE TABLE cluster_token (
    id     INTEGER PRIMARY KEY CHECK (id = 1),
    token  TEXT    NOT NULL
);
