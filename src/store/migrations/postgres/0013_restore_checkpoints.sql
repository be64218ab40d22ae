-- Checkpoints made after a restore from backup, PostgreSQL. Same meaning as the SQLite
-- migration. A version 3 checkpoint is a version 2 checkpoint that also signs
-- `replaces_checkpoint`: the hash of the checkpoint named by the anchor that the restore
-- left behind. An anchor file keeps its older lines; with this signed statement `audit
-- verify` can follow the file to the restored state, and nobody without the HSM key can
-- make such a statement.
ALTER TABLE audit_checkpoints ADD COLUMN replaces_checkpoint TEXT;
