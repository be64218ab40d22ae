-- A change log for certificate status, so every process sharing this SQLite file learns of
-- a revocation made by another one (PostgreSQL uses NOTIFY instead). Written by triggers in
-- the same transaction as the change; read by each store handle's poller; pruned after a day.
CREATE TABLE cert_changes (
    seq     INTEGER PRIMARY KEY AUTOINCREMENT,
    serial  TEXT    NOT NULL,
    at      INTEGER NOT NULL DEFAULT (unixepoch())
);

CREATE TRIGGER cert_changes_on_insert AFTER INSERT ON certificates
BEGIN
    INSERT INTO cert_changes (serial) VALUES (NEW.serial);
END;

CREATE TRIGGER cert_changes_on_status AFTER UPDATE OF status ON certificates
WHEN OLD.status IS NOT NEW.status
BEGIN
    INSERT INTO cert_changes (serial) VALUES (NEW.serial);
END;

CREATE TRIGGER cert_changes_on_user AFTER UPDATE OF enabled ON users
WHEN OLD.enabled IS NOT NEW.enabled
BEGIN
    INSERT INTO cert_changes (serial) SELECT serial FROM certificates WHERE login = NEW.login;
END;

-- '*' asks every cache to start over.
CREATE TRIGGER cert_changes_on_contract AFTER UPDATE OF enabled ON contracts
WHEN OLD.enabled IS NOT NEW.enabled
BEGIN
    INSERT INTO cert_changes (serial) VALUES ('*');
END;
