-- depends: 0003_decisions
-- The outbox and its schedule: sends due now or planned for later
-- (PostgresOutboxStore). Workers claim due rows with FOR UPDATE SKIP LOCKED.
CREATE TABLE outbox (
    key TEXT COLLATE "C" PRIMARY KEY,
    decision_id TEXT COLLATE "C" NOT NULL,
    customer_id TEXT COLLATE "C" NOT NULL,
    channel TEXT COLLATE "C" NOT NULL,
    state TEXT COLLATE "C" NOT NULL,
    due_ms BIGINT NOT NULL,
    created_ms BIGINT NOT NULL,
    updated_ms BIGINT NOT NULL,
    send_at_ms BIGINT NOT NULL,
    expires_ms BIGINT,
    attempts BIGINT NOT NULL,
    claims BIGINT NOT NULL,
    worker TEXT COLLATE "C" NOT NULL,
    provider TEXT COLLATE "C" NOT NULL,
    provider_message_id TEXT COLLATE "C" NOT NULL,
    reason TEXT COLLATE "C" NOT NULL,
    message BYTEA
);
CREATE INDEX outbox_live ON outbox (due_ms, key) WHERE state IN ('pending', 'claimed');
CREATE INDEX outbox_decision ON outbox (decision_id);
CREATE INDEX outbox_customer ON outbox (customer_id);
