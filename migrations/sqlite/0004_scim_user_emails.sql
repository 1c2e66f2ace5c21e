-- litellm-sync store, schema 4: every address of a SCIM User, so that a filter on emails.value finds the user by
-- any of them (dir_users.email_lc holds one). Filled from the stored resources of SCIM sources.
CREATE TABLE dir_user_emails (
    source   TEXT NOT NULL,
    user_id  TEXT NOT NULL,
    email_lc TEXT NOT NULL,
    PRIMARY KEY (source, user_id, email_lc)
) WITHOUT ROWID;
CREATE INDEX dir_user_emails_email ON dir_user_emails (source, email_lc);
INSERT OR IGNORE INTO dir_user_emails (source, user_id, email_lc)
    SELECT u.source, u.external_id, lower(json_extract(e.value, '$.value'))
    FROM dir_users u, json_each(u.resource, '$.emails') e
    WHERE u.resource IS NOT NULL AND json_valid(u.resource) AND json_type(u.resource, '$.emails') = 'array'
      AND json_type(e.value, '$.value') = 'text';
