-- litellm-sync store, schema 2.
-- One plan covers every source now (a team fed by two sources, a user_id two sources render), so the outbox is
-- one queue; its `source` column stays for old rows' sake and holds '*'. The operation format changed too (one
-- membership per operation), so operations written by schema 1 are dropped: they are derived state, and the
-- first run after the upgrade plans them again from the stored snapshots and the ledger.
DELETE FROM outbox;
-- The run lease: one process at a time plans and applies against this store (the daemon, or a CLI sync).
CREATE TABLE lease (
    name       TEXT PRIMARY KEY,
    holder     TEXT NOT NULL,
    expires_at INTEGER NOT NULL
);
