-- litellm-sync store, schema 3: the directory as rows.
-- Each source's view is identities, groups and memberships, one row each, so that a push source's change is one
-- small transaction instead of a rewrite of the source's whole snapshot. A row's `body` is the JSON of the
-- model's Identity or Group (a group's members live in dir_members); `hash` lets a full snapshot be diffed into
-- rows; `resource`, `rev`, `created_at` belong to a SCIM source (the stored SCIM resource and its version).
CREATE TABLE dir_users (
    source       TEXT NOT NULL,
    external_id  TEXT NOT NULL,
    user_name_lc TEXT NOT NULL,
    email_lc     TEXT,
    external_ref TEXT,
    body         TEXT NOT NULL,
    hash         TEXT NOT NULL,
    resource     TEXT,
    rev          INTEGER NOT NULL DEFAULT 1,
    created_at   TEXT,
    updated_at   TEXT NOT NULL,
    PRIMARY KEY (source, external_id)
);
CREATE INDEX dir_users_name ON dir_users (source, user_name_lc);
CREATE INDEX dir_users_email ON dir_users (source, email_lc);
CREATE INDEX dir_users_ref ON dir_users (source, external_ref);
CREATE TABLE dir_groups (
    source       TEXT NOT NULL,
    external_id  TEXT NOT NULL,
    name_lc      TEXT NOT NULL,
    external_ref TEXT,
    body         TEXT NOT NULL,
    hash         TEXT NOT NULL,
    resource     TEXT,
    rev          INTEGER NOT NULL DEFAULT 1,
    created_at   TEXT,
    updated_at   TEXT NOT NULL,
    PRIMARY KEY (source, external_id)
);
CREATE INDEX dir_groups_name ON dir_groups (source, name_lc);
CREATE INDEX dir_groups_ref ON dir_groups (source, external_ref);
-- kind: 'user' (a member user) or 'group' (a nested group).
CREATE TABLE dir_members (
    source    TEXT NOT NULL,
    group_id  TEXT NOT NULL,
    kind      TEXT NOT NULL CHECK (kind IN ('user', 'group')),
    member_id TEXT NOT NULL,
    PRIMARY KEY (source, group_id, kind, member_id)
) WITHOUT ROWID;
CREATE INDEX dir_members_member ON dir_members (source, member_id);
-- One row per source that has a view: when it was taken, and what the read could not convert.
CREATE TABLE dir_views (
    source     TEXT PRIMARY KEY,
    taken_at   TEXT NOT NULL,
    unreadable TEXT NOT NULL DEFAULT '[]'
);

-- Carry the snapshots of schema 1/2 over (hash '' makes the next full read rewrite each row once).
INSERT INTO dir_views (source, taken_at, unreadable)
    SELECT source, taken_at, COALESCE(json_extract(body, '$.unreadable'), '[]') FROM snapshots;
INSERT OR IGNORE INTO dir_users (source, external_id, user_name_lc, email_lc, body, hash, updated_at)
    SELECT s.source, json_extract(u.value, '$.external_id'), lower(json_extract(u.value, '$.user_name')),
           lower(json_extract(u.value, '$.email')), u.value, '', s.taken_at
    FROM snapshots s, json_each(s.body, '$.users') u;
INSERT OR IGNORE INTO dir_groups (source, external_id, name_lc, body, hash, updated_at)
    SELECT s.source, json_extract(g.value, '$.external_id'), lower(json_extract(g.value, '$.name')),
           json_remove(g.value, '$.members', '$.member_groups'), '', s.taken_at
    FROM snapshots s, json_each(s.body, '$.groups') g;
INSERT OR IGNORE INTO dir_members (source, group_id, kind, member_id)
    SELECT s.source, json_extract(g.value, '$.external_id'), 'user', m.value
    FROM snapshots s, json_each(s.body, '$.groups') g, json_each(g.value, '$.members') m;
INSERT OR IGNORE INTO dir_members (source, group_id, kind, member_id)
    SELECT s.source, json_extract(g.value, '$.external_id'), 'group', m.value
    FROM snapshots s, json_each(s.body, '$.groups') g, json_each(g.value, '$.member_groups') m;
DROP TABLE snapshots;
