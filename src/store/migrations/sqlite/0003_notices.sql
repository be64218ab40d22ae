-- Expiry notices, SQLite. Same meaning as migrations/postgres/0002_notices.sql.

-- Which notice (N days before expiry) of which certificate has been decided: `scheduled`
-- (an outbox row was written in the same transaction) or `skipped` (a more urgent notice
-- was due at the same pass). The primary key makes a second decision impossible.
CREATE TABLE notices (
    serial      TEXT    NOT NULL REFERENCES certificates (serial),
    notice_days INTEGER NOT NULL,
    state       TEXT    NOT NULL CHECK (state IN ('scheduled', 'skipped')),
    decided_at  INTEGER NOT NULL,
    PRIMARY KEY (serial, notice_days)
);

-- E-mails to send. A worker claims a pending row by setting claim_token and claimed_until
-- (a lease) inside a write transaction; a lease that ran out may be claimed again.
CREATE TABLE notice_outbox (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    serial          TEXT    NOT NULL,
    notice_days     INTEGER NOT NULL,
    login           TEXT    NOT NULL,
    recipient       TEXT    NOT NULL,
    language        TEXT    NOT NULL,
    subject         TEXT    NOT NULL,
    body            TEXT    NOT NULL,
    state           TEXT    NOT NULL CHECK (state IN ('pending', 'sent', 'failed', 'cancelled')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    claim_token     TEXT,
    claimed_until   INTEGER,
    last_error      TEXT,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    sent_at         INTEGER,
    UNIQUE (serial, notice_days),
    FOREIGN KEY (serial, notice_days) REFERENCES notices (serial, notice_days)
);
CREATE INDEX notice_outbox_due ON notice_outbox (state, next_attempt_at);
