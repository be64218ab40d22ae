-- Bank staff. Same meaning as migrations/postgres/0009_staff.sql.
--
-- A staff member is a `users` row (login `staff:<name>`, contract ':staff', role 'general',
-- unused) so that certificates, the status cache, the change log, the CRL, OCSP, notices
-- and renewal serve staff certificates unchanged, plus a row here with the staff role.
-- Customer login and contract IDs cannot contain ':', so the two never meet.

INSERT INTO contracts (id, name, enabled, created_at) VALUES (':staff', 'bank staff', 1, unixepoch());

CREATE TABLE staff (
    login       TEXT    PRIMARY KEY REFERENCES users (login),
    role        TEXT    NOT NULL CHECK (role IN ('operator', 'supervisor', 'auditor')),
    created_at  INTEGER NOT NULL
);
