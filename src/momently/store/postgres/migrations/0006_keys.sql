-- depends: 0005_fences_privacy
-- The API keys of distributed mode's ingest nodes (momently keys --store): the same
-- columns as the embedded key table (momently.auth.keys), the token kept only as its
-- SHA-256 digest. Used in the key schema alone (momently.store.postgres.keys); in a
-- partition's schema it stays empty.
CREATE TABLE api_keys (
    id TEXT COLLATE "C" PRIMARY KEY,
    digest BYTEA NOT NULL UNIQUE,
    kind TEXT NOT NULL,
    scopes TEXT NOT NULL,
    source TEXT,
    hint TEXT NOT NULL,
    rate DOUBLE PRECISION,
    burst INTEGER,
    created_ms BIGINT NOT NULL,
    revoked_ms BIGINT
);
