-- Signed checkpoints of the audit chain, SQLite. Same meaning as the PostgreSQL migration.
-- A checkpoint says "entry `seq` had hash `hash` at time `at`", signed in the HSM by the key
-- `key_label` (whose SubjectPublicKeyInfo is kept for reference only: verifiers take the
-- public key from the HSM, since whoever can rewrite this table can rewrite this column).

CREATE TABLE audit_checkpoints (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    seq         INTEGER NOT NULL,
    hash        TEXT    NOT NULL,
    at          INTEGER NOT NULL,
    key_label   TEXT    NOT NULL,
    algorithm   TEXT    NOT NULL,
    public_key  BLOB    NOT NULL,
    signature   BLOB    NOT NULL
);
CREATE INDEX audit_checkpoints_by_seq ON audit_checkpoints (seq);
-- Append-only, like the log itself.
CREATE TRIGGER audit_checkpoints_no_update BEFORE UPDATE ON audit_checkpoints
BEGIN
    SELECT RAISE(ABORT, 'audit_checkpoints is append-only');
END;
CREATE TRIGGER audit_checkpoints_no_delete BEFORE DELETE ON audit_checkpoints
BEGIN
    SELECT RAISE(ABORT, 'audit_checkpoints is append-only');
END;
