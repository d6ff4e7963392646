-- Cluster-wide coalescing: the node holding a live lease on a key fetches it from the upstream;
-- the others stream from that node (its advertised URL) and take over once the lease expires.
CREATE TABLE fetch_leases (
    key         TEXT        PRIMARY KEY,
    owner       TEXT        NOT NULL,
    node_url    TEXT        NOT NULL,
    expires_at  TIMESTAMPTZ NOT NULL
);
