-- Every address of a SCIM User (see migrations/sqlite/0004_scim_user_emails.sql).
CREATE TABLE dir_user_emails (
    source   TEXT NOT NULL,
    user_id  TEXT NOT NULL,
    email_lc TEXT NOT NULL,
    PRIMARY KEY (source, user_id, email_lc)
);
CREATE INDEX dir_user_emails_email ON dir_user_emails (source, email_lc);
INSERT INTO dir_user_emails (source, user_id, email_lc)
    SELECT u.source, u.external_id, lower(e.value ->> 'value')
    FROM dir_users u, jsonb_array_elements(
        CASE WHEN jsonb_typeof(u.resource::jsonb -> 'emails') = 'array' THEN u.resource::jsonb -> 'emails' ELSE '[]'::jsonb END
    ) e
    WHERE u.resource IS NOT NULL AND jsonb_typeof(e.value -> 'value') = 'string'
ON CONFLICT DO NOTHING;
