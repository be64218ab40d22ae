-- Chained audit checkpoints, PostgreSQL. Same meaning as the SQLite migration.
-- A version 2 checkpoint also signs the hash of the checkpoint before it
-- (`prev_checkpoint`, the SHA-256 of that one's signed message; all zeros for the first),
-- so a checkpoint deleted from the middle breaks the chain. Version 1 rows (NULL
-- `prev_checkpoint`) keep verifying as they were signed.
ALTER TABLE audit_checkpoints ADD COLUMN version BIGINT NOT NULL DEFAULT 1;
ALTER TABLE audit_checkpoints ADD COLUMN prev_checkpoint TEXT;
