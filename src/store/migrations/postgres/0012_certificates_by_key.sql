-- Finding the certificates of one public key: a key already certified for another login
-- ID, or reported compromised, is not certified again. Same meaning as
-- migrations/sqlite/0012_certificates_by_key.sql.
CREATE INDEX certificates_by_key ON certificates (spki_sha256);
