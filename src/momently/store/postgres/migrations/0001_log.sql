-- The event log, identities, profiles and merges (PostgresStore).
-- seq is handed out under the row lock of log_head, not by a sequence: a
-- sequence leaves gaps on rollback and can commit seq n+1 before seq n, and a
-- reader tailing the log by position would skip the late one.
CREATE TABLE log_head (
    id BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (id),
    seq BIGINT NOT NULL
);
INSERT INTO log_head (id, seq) VALUES (TRUE, 0);
CREATE TABLE events (
    seq BIGINT PRIMARY KEY,
    message_id TEXT COLLATE "C" NOT NULL UNIQUE,
    customer_id TEXT COLLATE "C" NOT NULL,
    ts_ms BIGINT NOT NULL,
    payload BYTEA NOT NULL
);
CREATE INDEX events_by_customer ON events (customer_id, seq);
CREATE TABLE identities (
    kind TEXT COLLATE "C" NOT NULL,
    value TEXT COLLATE "C" NOT NULL,
    customer_id TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (kind, value)
);
CREATE INDEX identities_by_customer ON identities (customer_id);
CREATE TABLE profiles (customer_id TEXT COLLATE "C" PRIMARY KEY, body BYTEA NOT NULL);
CREATE TABLE merges (loser TEXT COLLATE "C" PRIMARY KEY, winner TEXT COLLATE "C" NOT NULL);
CREATE INDEX merges_by_winner ON merges (winner);
