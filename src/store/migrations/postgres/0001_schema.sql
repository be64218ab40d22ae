-- certgate schema, PostgreSQL. Same meaning as migrations/sqlite/0001_schema.sql.
-- Timestamps: BIGINT Unix seconds. Hashes: lowercase hex.

CREATE TABLE contracts (
    id          TEXT    PRIMARY KEY,
    name        TEXT    NOT NULL,
    enabled     BOOLEAN NOT NULL,
    created_at  BIGINT  NOT NULL
);

CREATE TABLE users (
    login       TEXT    PRIMARY KEY,
    contract_id TEXT    NOT NULL REFERENCES contracts (id),
    role        TEXT    NOT NULL CHECK (role IN ('admin', 'approver', 'general')),
    email       TEXT    NOT NULL,
    enabled     BOOLEAN NOT NULL,
    created_at  BIGINT  NOT NULL
);
CREATE INDEX users_by_contract ON users (contract_id);

CREATE TABLE cas (
    id          BIGINT  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    key_label   TEXT    NOT NULL,
    cert_der    BYTEA   NOT NULL,
    chain_pem   TEXT    NOT NULL,
    active      BOOLEAN NOT NULL,
    created_at  BIGINT  NOT NULL
);
-- Exactly one CA issues at a time.
CREATE UNIQUE INDEX cas_one_active ON cas (active) WHERE active;

CREATE TABLE crl_numbers (
    ca_id       BIGINT  PRIMARY KEY REFERENCES cas (id),
    last_number BIGINT  NOT NULL
);

CREATE TABLE certificates (
    serial            TEXT    PRIMARY KEY,
    login             TEXT    NOT NULL REFERENCES users (login),
    contract_id       TEXT    NOT NULL REFERENCES contracts (id),
    ca_id             BIGINT  NOT NULL REFERENCES cas (id),
    der               BYTEA   NOT NULL,
    sha256            TEXT    NOT NULL UNIQUE,
    spki_sha256       TEXT    NOT NULL,
    not_before        BIGINT  NOT NULL,
    not_after         BIGINT  NOT NULL,
    status            TEXT    NOT NULL CHECK (status IN ('current', 'superseded', 'revoked')),
    superseded_at     BIGINT,
    revoked_at        BIGINT,
    revocation_reason TEXT,
    first_used_at     BIGINT,
    created_at        BIGINT  NOT NULL,
    CHECK ((status = 'revoked') = (revoked_at IS NOT NULL AND revocation_reason IS NOT NULL))
);
-- The scheme's "one certificate per ID": at most one current certificate per login ID.
CREATE UNIQUE INDEX certificates_one_current ON certificates (login) WHERE status = 'current';
CREATE INDEX certificates_for_crl ON certificates (ca_id, status, not_after);
CREATE INDEX certificates_superseded ON certificates (status, superseded_at);

CREATE TABLE issuance_codes (
    login             TEXT    PRIMARY KEY REFERENCES users (login),
    code_hash         TEXT    NOT NULL,
    created_at        BIGINT  NOT NULL,
    expires_at        BIGINT  NOT NULL,
    failed_attempts   BIGINT  NOT NULL DEFAULT 0,
    locked            BOOLEAN NOT NULL DEFAULT FALSE,
    used_at           BIGINT,
    used_serial       TEXT    REFERENCES certificates (serial),
    -- SPKI hash of the last accepted claim; after redemption, that of the issued certificate.
    claim_spki_sha256 TEXT
);

CREATE TABLE audit_log (
    seq        BIGINT  PRIMARY KEY,
    at         BIGINT  NOT NULL,
    actor      TEXT    NOT NULL,
    action     TEXT    NOT NULL,
    subject    TEXT    NOT NULL,
    outcome    TEXT    NOT NULL,
    detail     TEXT    NOT NULL,
    prev_hash  TEXT    NOT NULL UNIQUE,
    hash       TEXT    NOT NULL UNIQUE
);
-- Append-only: rows are never changed or removed.
CREATE FUNCTION certgate_audit_log_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only';
END
$$;
CREATE TRIGGER audit_log_no_change BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION certgate_audit_log_append_only();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION certgate_audit_log_append_only();
