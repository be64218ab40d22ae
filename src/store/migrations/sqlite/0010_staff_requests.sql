-- Four-eyes requests: a staff member's action that waits for a supervisor's approval.
-- Same meaning as migrations/postgres/0010_staff_requests.sql.
CREATE TABLE staff_requests (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    -- What would run, e.g. 'cert.revoke', and what it is about (a login ID, a serial).
    action      TEXT    NOT NULL,
    subject     TEXT    NOT NULL,
    -- The action's parameters as JSON; never a secret.
    params      TEXT    NOT NULL,
    -- Staff names (not login IDs).
    maker       TEXT    NOT NULL,
    checker     TEXT,
    -- 'approving': a supervisor approved and the action is running; a crash there leaves it
    -- so, for staff to look at (the action's own audit entry says whether it ran).
    state       TEXT    NOT NULL CHECK (state IN
                    ('pending', 'approving', 'done', 'failed', 'rejected', 'withdrawn', 'expired')),
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL,
    decided_at  INTEGER,
    -- What the action answered (without any code), or why it failed, as JSON.
    result      TEXT
);
CREATE INDEX staff_requests_by_state ON staff_requests (state, expires_at);
