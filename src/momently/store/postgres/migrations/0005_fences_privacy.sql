-- depends: 0004_outbox
-- Fencing tokens of distributed mode (the newest token each store has
-- committed, and the stream position committed with it), and the digests of
-- erased identities that must not come back (privacy).
CREATE TABLE fences (
    name TEXT COLLATE "C" PRIMARY KEY,
    token BIGINT NOT NULL,
    position BIGINT NOT NULL
);
CREATE TABLE suppressed (digest TEXT COLLATE "C" PRIMARY KEY);
