-- Bank staff. Same meaning as migrations/sqlite/0009_staff.sql.

INSERT INTO contracts (id, name, enabled, created_at)
VALUES (':staff', 'bank staff', TRUE, EXTRACT(EPOCH FROM now())::BIGINT);

CREATE TABLE staff (
    login       TEXT    PRIMARY KEY REFERENCES users (login),
    role        TEXT    NOT NULL CHECK (role IN ('operator', 'supervisor', 'auditor')),
    created_at  BIGINT  NOT NULL
);
