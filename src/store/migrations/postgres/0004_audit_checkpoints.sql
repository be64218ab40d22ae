-- Signed checkpoints of the audit chain, PostgreSQL. Same meaning as the SQLite migration.
-- A checkpoint says "entry `seq` had hash `hash` at time `at`", signed in the HSM by the key
-- `key_label` (whose SubjectPublicKeyInfo is kept for reference only: verifiers take the
-- public key from the HSM, since whoever can rewrite this table can rewrite this column).

CREATE TABLE audit_checkpoints (
    id          BIGSERIAL PRIMARY KEY,
    seq         BIGINT  NOT NULL,
    hash        TEXT    NOT NULL,
    at          BIGINT  NOT NULL,
    key_label   TEXT    NOT NULL,
    algorithm   TEXT    NOT NULL,
    public_key  BYTEA   NOT NULL,
    signature   BYTEA   NOT NULL
);
CREATE INDEX audit_checkpoints_by_seq ON audit_checkpoints (seq);
-- Append-only, like the log itself (the function comes from 0001).
CREATE TRIGGER audit_checkpoints_no_change BEFORE UPDATE OR DELETE ON audit_checkpoints
    FOR EACH ROW EXECUTE FUNCTION certgate_audit_log_append_only();
CREATE TRIGGER audit_checkpoints_no_truncate BEFORE TRUNCATE ON audit_checkpoints
    FOR EACH STATEMENT EXECUTE FUNCTION certgate_audit_log_append_only();
