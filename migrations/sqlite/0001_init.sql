-- litellm-sync store, schema 1.
-- The last complete snapshot each source reported (JSON of model::Snapshot).
CREATE TABLE snapshots (
    source     TEXT PRIMARY KEY,
    taken_at   TEXT NOT NULL,
    body       TEXT NOT NULL
);
-- Ledger: the LiteLLM rows of managed users and teams as litellm-sync last applied them (JSON).
CREATE TABLE ledger_users (
    user_id    TEXT PRIMARY KEY,
    row        TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE TABLE ledger_teams (
    team_id    TEXT PRIMARY KEY,
    row        TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
-- Outbox: operations accepted but not yet applied. status: pending (retried with backoff) or failed (refused by
-- LiteLLM; kept and visible until the next full resync replaces it).
CREATE TABLE outbox (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    source      TEXT NOT NULL,
    run_id      TEXT NOT NULL,
    seq         INTEGER NOT NULL,
    op          TEXT NOT NULL,
    status      TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'failed')),
    attempts    INTEGER NOT NULL DEFAULT 0,
    last_error  TEXT,
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL
);
CREATE INDEX outbox_source ON outbox (source, status, seq);
-- Small facts: ledger_bootstrapped, last drift check per source.
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
