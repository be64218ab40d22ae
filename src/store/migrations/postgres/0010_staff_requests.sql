-- Same meaning as migrations/sqlite/0010_staff_requests.sql.
CREATE TABLE staff_requests (
    id          BIGINT  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    action      TEXT    NOT NULL,
    subject     TEXT    NOT NULL,
    params      TEXT    NOT NULL,
    maker       TEXT    NOT NULL,
    checker     TEXT,
    state       TEXT    NOT NULL CHECK (state IN
                    ('pending', 'approving', 'done', 'failed', 'rejected', 'withdrawn', 'expired')),
    created_at  BIGINT  NOT NULL,
    expires_at  BIGINT  NOT NULL,
    decided_at  BIGINT,
    result      TEXT
);
CREATE INDEX staff_requests_by_state ON staff_requests (state, expires_at);
