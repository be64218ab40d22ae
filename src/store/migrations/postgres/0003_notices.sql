-- Expiry notices, PostgreSQL. Same meaning as migrations/sqlite/0002_notices.sql.

-- Which notice (N days before expiry) of which certificate has been decided: `scheduled`
-- (an outbox row was written in the same transaction) or `skipped` (a more urgent notice
-- was due at the same pass). The primary key makes a second decision impossible.
CREATE TABLE notices (
    serial      TEXT    NOT NULL REFERENCES certificates (serial),
    notice_days BIGINT  NOT NULL,
    state       TEXT    NOT NULL CHECK (state IN ('scheduled', 'skipped')),
    decided_at  BIGINT  NOT NULL,
    PRIMARY KEY (serial, notice_days)
);

-- E-mails to send. A worker claims pending rows with FOR UPDATE SKIP LOCKED and sets
-- claim_token and claimed_until (a lease); a lease that ran out may be claimed again.
CREATE TABLE notice_outbox (
    id              BIGINT  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    serial          TEXT    NOT NULL,
    notice_days     BIGINT  NOT NULL,
    login           TEXT    NOT NULL,
    recipient       TEXT    NOT NULL,
    language        TEXT    NOT NULL,
    subject         TEXT    NOT NULL,
    body            TEXT    NOT NULL,
    state           TEXT    NOT NULL CHECK (state IN ('pending', 'sent', 'failed', 'cancelled')),
    attempts        BIGINT  NOT NULL DEFAULT 0,
    next_attempt_at BIGINT  NOT NULL,
    claim_token     TEXT,
    claimed_until   BIGINT,
    last_error      TEXT,
    created_at      BIGINT  NOT NULL,
    updated_at      BIGINT  NOT NULL,
    sent_at         BIGINT,
    UNIQUE (serial, notice_days),
    FOREIGN KEY (serial, notice_days) REFERENCES notices (serial, notice_days)
);
CREATE INDEX notice_outbox_due ON notice_outbox (state, next_attempt_at);
