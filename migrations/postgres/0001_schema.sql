-- litellm-sync store on PostgreSQL, schema 1 (the same model as SQLite schema 3; see migrations/sqlite/).
-- Several replicas share it: the directory and the outbox live here, one replica (the leader) applies.
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
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
-- Outbox: operations accepted but not yet applied (one queue for every source).
CREATE TABLE outbox (
    id          BIGSERIAL PRIMARY KEY,
    run_id      TEXT NOT NULL,
    seq         BIGINT NOT NULL,
    op          TEXT NOT NULL,
    status      TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'failed')),
    attempts    BIGINT NOT NULL DEFAULT 0,
    last_error  TEXT,
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL
);
CREATE INDEX outbox_status ON outbox (status, seq);
-- The run lease (a CLI sync and the daemon's runs never overlap).
CREATE TABLE lease (
    name       TEXT PRIMARY KEY,
    holder     TEXT NOT NULL,
    expires_at BIGINT NOT NULL
);
-- Leadership: bumped by every replica that becomes the leader; a deposed leader's writes carry an old epoch and
-- are refused.
CREATE TABLE leader (
    id         INTEGER PRIMARY KEY CHECK (id = 1),
    epoch      BIGINT NOT NULL,
    holder     TEXT NOT NULL,
    since      TEXT NOT NULL
);
INSERT INTO leader (id, epoch, holder, since) VALUES (1, 0, '', '');
-- The directory as rows (see migrations/sqlite/0003_directory_rows.sql); seq gives SCIM listings a stable order.
CREATE TABLE dir_users (
    seq          BIGSERIAL,
    source       TEXT NOT NULL,
    external_id  TEXT NOT NULL,
    user_name_lc TEXT NOT NULL,
    email_lc     TEXT,
    external_ref TEXT,
    body         TEXT NOT NULL,
    hash         TEXT NOT NULL,
    resource     TEXT,
    rev          BIGINT NOT NULL DEFAULT 1,
    created_at   TEXT,
    updated_at   TEXT NOT NULL,
    PRIMARY KEY (source, external_id)
);
CREATE INDEX dir_users_name ON dir_users (source, user_name_lc);
CREATE INDEX dir_users_email ON dir_users (source, email_lc);
CREATE INDEX dir_users_ref ON dir_users (source, external_ref);
CREATE INDEX dir_users_seq ON dir_users (source, seq);
CREATE TABLE dir_groups (
    seq          BIGSERIAL,
    source       TEXT NOT NULL,
    external_id  TEXT NOT NULL,
    name_lc      TEXT NOT NULL,
    external_ref TEXT,
    body         TEXT NOT NULL,
    hash         TEXT NOT NULL,
    resource     TEXT,
    rev          BIGINT NOT NULL DEFAULT 1,
    created_at   TEXT,
    updated_at   TEXT NOT NULL,
    PRIMARY KEY (source, external_id)
);
CREATE INDEX dir_groups_name ON dir_groups (source, name_lc);
CREATE INDEX dir_groups_ref ON dir_groups (source, external_ref);
CREATE INDEX dir_groups_seq ON dir_groups (source, seq);
CREATE TABLE dir_members (
    source    TEXT NOT NULL,
    group_id  TEXT NOT NULL,
    kind      TEXT NOT NULL CHECK (kind IN ('user', 'group')),
    member_id TEXT NOT NULL,
    PRIMARY KEY (source, group_id, kind, member_id)
);
CREATE INDEX dir_members_member ON dir_members (source, member_id);
CREATE TABLE dir_views (
    source     TEXT PRIMARY KEY,
    taken_at   TEXT NOT NULL,
    unreadable TEXT NOT NULL DEFAULT '[]'
);
