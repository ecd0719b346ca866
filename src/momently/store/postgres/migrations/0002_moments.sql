-- depends: 0001_log
-- Moments, per-customer moment state (with its timer), journeys, world events,
-- model snapshots and named checkpoints (PostgresMomentStore).
CREATE TABLE moments (
    moment_id TEXT COLLATE "C" PRIMARY KEY,
    customer_id TEXT COLLATE "C" NOT NULL,
    kind TEXT COLLATE "C" NOT NULL,
    name TEXT COLLATE "C" NOT NULL,
    at_ms BIGINT NOT NULL,
    body BYTEA NOT NULL
);
CREATE INDEX moments_by_time ON moments (at_ms, moment_id);
CREATE INDEX moments_by_customer ON moments (customer_id, at_ms);
CREATE TABLE states (customer_id TEXT COLLATE "C" PRIMARY KEY, body BYTEA NOT NULL, due_ms BIGINT);
CREATE INDEX states_by_due ON states (due_ms) WHERE due_ms IS NOT NULL;
CREATE TABLE journeys (
    journey TEXT COLLATE "C" NOT NULL,
    customer_id TEXT COLLATE "C" NOT NULL,
    run BIGINT NOT NULL,
    body BYTEA NOT NULL,
    PRIMARY KEY (journey, customer_id, run)
);
CREATE TABLE world_events (id TEXT COLLATE "C" PRIMARY KEY, body BYTEA NOT NULL);
CREATE TABLE models (name TEXT COLLATE "C" PRIMARY KEY, version TEXT COLLATE "C" NOT NULL, body BYTEA NOT NULL);
CREATE TABLE checkpoints (name TEXT COLLATE "C" PRIMARY KEY, position BIGINT NOT NULL);
