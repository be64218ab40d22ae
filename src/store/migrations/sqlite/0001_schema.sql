-- certgate schema, SQLite. Same meaning as migrations/postgres/0001_schema.sql.
-- Timestamps: INTEGER Unix seconds. Booleans: INTEGER 0/1. Hashes: lowercase hex.

CREATE TABLE contracts (
    id          TEXT    PRIMARY KEY,
    name        TEXT    NOT NULL,
    enabled     INTEGER NOT NULL CHECK (enabled IN (0, 1)),
    created_at  INTEGER NOT NULL
);

CREATE TABLE users (
    login       TEXT    PRIMARY KEY,
    contract_id TEXT    NOT NULL REFERENCES contracts (id),
    role        TEXT    NOT NULL CHECK (role IN ('admin', 'approver', 'general')),
    email       TEXT    NOT NULL,
    enabled     INTEGER NOT NULL CHECK (enabled IN (0, 1)),
    created_at  INTEGER NOT NULL
);
CREATE INDEX users_by_contract ON users (contract_id);

CREATE TABLE cas (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    key_label   TEXT    NOT NULL,
    cert_der    BLOB    NOT NULL,
    chain_pem   TEXT    NOT NULL,
    active      INTEGER NOT NULL CHECK (active IN (0, 1)),
    created_at  INTEGER NOT NULL
);
-- Exactly one CA issues at a time.
CREATE UNIQUE INDEX cas_one_active ON cas (active) WHERE active;

CREATE TABLE crl_numbers (
    ca_id       INTEGER PRIMARY KEY REFERENCES cas (id),
    last_number INTEGER NOT NULL
);

CREATE TABLE certificates (
    serial            TEXT    PRIMARY KEY,
    login             TEXT    NOT NULL REFERENCES users (login),
    contract_id       TEXT    NOT NULL REFERENCES contracts (id),
    ca_id             INTEGER NOT NULL REFERENCES cas (id),
    der               BLOB    NOT NULL,
    sha256            TEXT    NOT NULL UNIQUE,
    spki_sha256       TEXT    NOT NULL,
    not_before        INTEGER NOT NULL,
    not_after         INTEGER NOT NULL,
    status            TEXT    NOT NULL CHECK (status IN ('current', 'superseded', 'revoked')),
    superseded_at     INTEGER,
    revoked_at        INTEGER,
    revocation_reason TEXT,
    first_used_at     INTEGER,
    created_at        INTEGER NOT NULL,
    CHECK ((status = 'revoked') = (revoked_at IS NOT NULL AND revocation_reason IS NOT NULL))
);
-- The scheme's "one certificate per ID": at most one current certificate per login ID.
CREATE UNIQUE INDEX certificates_one_current ON certificates (login) WHERE status = 'current';
CREATE INDEX certificates_for_crl ON certificates (ca_id, status, not_after);
CREATE INDEX certificates_superseded ON certificates (status, superseded_at);

CREATE TABLE issuance_codes (
    login             TEXT    PRIMARY KEY REFERENCES users (login),
    code_hash         TEXT    NOT NULL,
    created_at        INTEGER NOT NULL,
    expires_at        INTEGER NOT NULL,
    failed_attempts   INTEGER NOT NULL DEFAULT 0,
    locked            INTEGER NOT NULL DEFAULT 0 CHECK (locked IN (0, 1)),
    used_at           INTEGER,
    used_serial       TEXT    REFERENCES certificates (serial),
    -- SPKI hash of the last accepted claim; after redemption, that of the issued certificate.
    claim_spki_sha256 TEXT
);

CREATE TABLE audit_log (
    seq        INTEGER PRIMARY KEY,
    at         INTEGER NOT NULL,
    actor      TEXT    NOT NULL,
    action     TEXT    NOT NULL,
    subject    TEXT    NOT NULL,
    outcome    TEXT    NOT NULL,
    detail     TEXT    NOT NULL,
    prev_hash  TEXT    NOT NULL UNIQUE,
    hash       TEXT    NOT NULL UNIQUE
);
-- Append-only: rows are never changed or removed.
CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'audit_log is append-only');
END;
CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'audit_log is append-only');
END;
