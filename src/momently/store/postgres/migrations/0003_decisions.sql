-- depends: 0002_moments
-- Decisions, written in the moment stage's transaction (PostgresMomentStore).
CREATE TABLE decisions (
    decision_id TEXT COLLATE "C" PRIMARY KEY,
    customer_id TEXT COLLATE "C" NOT NULL,
    moment_id TEXT COLLATE "C" NOT NULL,
    action TEXT COLLATE "C" NOT NULL,
    offer TEXT COLLATE "C",
    status TEXT COLLATE "C" NOT NULL,
    at_ms BIGINT NOT NULL,
    body BYTEA NOT NULL
);
CREATE INDEX decisions_by_time ON decisions (at_ms, decision_id);
CREATE INDEX decisions_by_customer ON decisions (customer_id, at_ms);
