//! The directory as rows in PostgreSQL (the twin of `sqlite/rows.rs`; the pure parts are in `directory/rows.rs`): a full snapshot diffed into `dir_users` / `dir_groups` / `dir_members` (only
//! the rows that changed are written), a source's view assembled back from them, and the SCIM resources of a push
//! source written together with their rows in one transaction. Nothing here knows what a rule or a plan is.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::{PgConnection, PgPool, Postgres, Row, Transaction};

use super::{json, now};
use crate::directory::rows::{corrupt, group_body, hash, kind_of, kind_text, next_rev};
use crate::directory::{
    MemberChange, MemberKind, ScimIndex, ScimKind, ScimRecord, ScimWrite, StoreError, FORGET_QUIET,
};
use crate::model::{Group, Identity, Snapshot, Unreadable};

/// Diffs a snapshot into the rows, inside the caller's transaction (which checked the fence).
pub(super) async fn save_snapshot(tx: &mut Transaction<'_, Postgres>, snap: &Snapshot) -> Result<(), StoreError> {
    let src = snap.source.as_str();
    let ts = now();
    // Users.
    let mut old: HashMap<String, String> = HashMap::new();
    for r in
        sqlx::query("SELECT external_id, hash FROM dir_users WHERE source = $1").bind(src).fetch_all(&mut **tx).await?
    {
        old.insert(r.try_get("external_id")?, r.try_get("hash")?);
    }
    for u in &snap.users {
        let body = json(u)?;
        let h = hash(&body);
        if old.remove(&u.external_id).as_deref() == Some(h.as_str()) {
            continue;
        }
        sqlx::query(
            "INSERT INTO dir_users (source, external_id, user_name_lc, email_lc, body, hash, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7)
             ON CONFLICT (source, external_id) DO UPDATE SET user_name_lc = $3, email_lc = $4, body = $5, hash = $6,
             updated_at = $7, rev = dir_users.rev + 1",
        )
        .bind(src)
        .bind(&u.external_id)
        .bind(u.user_name.to_lowercase())
        .bind(u.email.as_deref().map(str::to_lowercase))
        .bind(&body)
        .bind(&h)
        .bind(&ts)
        .execute(&mut **tx)
        .await?;
    }
    for gone in old.keys() {
        sqlx::query("DELETE FROM dir_users WHERE source = $1 AND external_id = $2")
            .bind(src)
            .bind(gone)
            .execute(&mut **tx)
            .await?;
    }
    // Groups, and their members when the group changed.
    let mut old: HashMap<String, String> = HashMap::new();
    for r in
        sqlx::query("SELECT external_id, hash FROM dir_groups WHERE source = $1").bind(src).fetch_all(&mut **tx).await?
    {
        old.insert(r.try_get("external_id")?, r.try_get("hash")?);
    }
    for g in &snap.groups {
        let body = group_body(g)?;
        // The hash covers the members too, so a membership change rewrites the group's member rows.
        let h = hash(&format!("{body}{}", json(&(&g.members, &g.member_groups))?));
        if old.remove(&g.external_id).as_deref() == Some(h.as_str()) {
            continue;
        }
        sqlx::query(
            "INSERT INTO dir_groups (source, external_id, name_lc, body, hash, updated_at) VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (source, external_id) DO UPDATE SET name_lc = $3, body = $4, hash = $5, updated_at = $6,
             rev = dir_groups.rev + 1",
        )
        .bind(src)
        .bind(&g.external_id)
        .bind(g.name.to_lowercase())
        .bind(&body)
        .bind(&h)
        .bind(&ts)
        .execute(&mut **tx)
        .await?;
        let members: Vec<(String, MemberKind)> = g
            .members
            .iter()
            .map(|m| (m.clone(), MemberKind::User))
            .chain(g.member_groups.iter().map(|m| (m.clone(), MemberKind::Group)))
            .collect();
        replace_members(tx, src, &g.external_id, &members).await?;
    }
    for gone in old.keys() {
        sqlx::query("DELETE FROM dir_groups WHERE source = $1 AND external_id = $2")
            .bind(src)
            .bind(gone)
            .execute(&mut **tx)
            .await?;
        sqlx::query("DELETE FROM dir_members WHERE source = $1 AND group_id = $2")
            .bind(src)
            .bind(gone)
            .execute(&mut **tx)
            .await?;
    }
    touch_view(tx, src, &snap.unreadable).await?;
    sqlx::query(FORGET_QUIET).execute(&mut **tx).await?;
    Ok(())
}

async fn touch_view(
    tx: &mut Transaction<'_, Postgres>,
    src: &str,
    unreadable: &[Unreadable],
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO dir_views (source, taken_at, unreadable) VALUES ($1, $2, $3)
         ON CONFLICT (source) DO UPDATE SET taken_at = $2, unreadable = $3",
    )
    .bind(src)
    .bind(now())
    .bind(json(&unreadable)?)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

async fn replace_members(
    conn: &mut PgConnection,
    src: &str,
    group: &str,
    members: &[(String, MemberKind)],
) -> Result<(), StoreError> {
    sqlx::query("DELETE FROM dir_members WHERE source = $1 AND group_id = $2")
        .bind(src)
        .bind(group)
        .execute(&mut *conn)
        .await?;
    insert_members(conn, src, group, members).await
}

/// A SCIM User's addresses, for filters on `emails.value`.
async fn replace_emails(conn: &mut PgConnection, src: &str, user: &str, emails: &[String]) -> Result<(), StoreError> {
    sqlx::query("DELETE FROM dir_user_emails WHERE source = $1 AND user_id = $2")
        .bind(src)
        .bind(user)
        .execute(&mut *conn)
        .await?;
    for e in emails {
        sqlx::query(
            "INSERT INTO dir_user_emails (source, user_id, email_lc) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
        )
        .bind(src)
        .bind(user)
        .bind(e.to_lowercase())
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// Every member being added is a resource of this source, of the kind given, checked inside the write's
/// transaction with `FOR SHARE` (a deletion committing meanwhile waits for this transaction, then removes the
/// membership with the member): the service resolved them before, but a concurrent DELETE (from another request
/// or replica) must not leave a membership of nobody.
async fn require_members(
    conn: &mut PgConnection,
    src: &str,
    members: &[(String, MemberKind)],
) -> Result<(), StoreError> {
    let ids: Vec<String> = members.iter().map(|(id, _)| id.clone()).collect();
    let found: HashSet<(String, MemberKind)> = resources_among(conn, src, &ids, true).await?.into_iter().collect();
    match members.iter().find(|m| !found.contains(*m)) {
        Some((id, _)) => Err(StoreError::MissingMember(id.clone())),
        None => Ok(()),
    }
}

/// Which of `ids` are Users and which are Groups of the source, a query per kind; `for_share` locks the rows
/// found until the transaction ends.
async fn resources_among(
    conn: &mut PgConnection,
    src: &str,
    ids: &[String],
    for_share: bool,
) -> Result<Vec<(String, MemberKind)>, StoreError> {
    let mut out = Vec::new();
    let lock = if for_share { " FOR SHARE" } else { "" };
    for (t, kind) in [("dir_users", MemberKind::User), ("dir_groups", MemberKind::Group)] {
        let q = format!(
            "SELECT external_id FROM {t} WHERE source = $1 AND resource IS NOT NULL AND external_id = ANY($2){lock}"
        );
        for r in sqlx::query(&q).bind(src).bind(ids).fetch_all(&mut *conn).await? {
            out.push((r.try_get("external_id")?, kind));
        }
    }
    Ok(out)
}

async fn insert_members(
    conn: &mut PgConnection,
    src: &str,
    group: &str,
    members: &[(String, MemberKind)],
) -> Result<(), StoreError> {
    for (id, kind) in members {
        sqlx::query("INSERT INTO dir_members (source, group_id, kind, member_id) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING")
            .bind(src)
            .bind(group)
            .bind(kind_text(*kind))
            .bind(id)
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

pub(super) async fn last_snapshot(pool: &PgPool, source: &str) -> Result<Option<Snapshot>, StoreError> {
    let Some(view) =
        sqlx::query("SELECT unreadable FROM dir_views WHERE source = $1").bind(source).fetch_optional(pool).await?
    else {
        return Ok(None);
    };
    let unreadable: Vec<Unreadable> = serde_json::from_str(&view.try_get::<String, _>("unreadable")?)
        .map_err(|e| corrupt("unreadable entries", e))?;
    let mut users = Vec::new();
    for r in
        sqlx::query("SELECT body FROM dir_users WHERE source = $1 ORDER BY seq").bind(source).fetch_all(pool).await?
    {
        let u: Identity =
            serde_json::from_str(&r.try_get::<String, _>("body")?).map_err(|e| corrupt("directory user", e))?;
        users.push(u);
    }
    let mut members: BTreeMap<String, (Vec<String>, Vec<String>)> = BTreeMap::new();
    for r in
        sqlx::query("SELECT group_id, kind, member_id FROM dir_members WHERE source = $1 ORDER BY group_id, member_id")
            .bind(source)
            .fetch_all(pool)
            .await?
    {
        let entry = members.entry(r.try_get("group_id")?).or_default();
        let id: String = r.try_get("member_id")?;
        if r.try_get::<String, _>("kind")? == "group" {
            entry.1.push(id);
        } else {
            entry.0.push(id);
        }
    }
    let mut groups = Vec::new();
    for r in
        sqlx::query("SELECT body FROM dir_groups WHERE source = $1 ORDER BY seq").bind(source).fetch_all(pool).await?
    {
        let mut g: Group =
            serde_json::from_str(&r.try_get::<String, _>("body")?).map_err(|e| corrupt("directory group", e))?;
        if let Some((m, sub)) = members.remove(&g.external_id) {
            g.members = m;
            g.member_groups = sub;
        }
        groups.push(g);
    }
    Ok(Some(Snapshot { source: source.to_string(), users, groups, unreadable }))
}

fn table(kind: ScimKind) -> &'static str {
    match kind {
        ScimKind::User => "dir_users",
        ScimKind::Group => "dir_groups",
    }
}

fn name_column(kind: ScimKind) -> &'static str {
    match kind {
        ScimKind::User => "user_name_lc",
        ScimKind::Group => "name_lc",
    }
}

fn time(s: Option<String>) -> DateTime<Utc> {
    s.and_then(|t| DateTime::parse_from_rfc3339(&t).ok()).map(|d| d.with_timezone(&Utc)).unwrap_or_else(Utc::now)
}

fn record(r: &sqlx::postgres::PgRow) -> Result<Option<ScimRecord>, StoreError> {
    let Some(resource) = r.try_get::<Option<String>, _>("resource")? else { return Ok(None) };
    Ok(Some(ScimRecord {
        id: r.try_get("external_id")?,
        resource: serde_json::from_str(&resource).map_err(|e| corrupt("SCIM resource", e))?,
        rev: r.try_get("rev")?,
        created_at: time(r.try_get("created_at")?),
        updated_at: time(r.try_get("updated_at")?),
    }))
}

const COLUMNS: &str = "external_id, resource, rev, created_at, updated_at";

pub(super) async fn scim_get(
    pool: &PgPool,
    src: &str,
    kind: ScimKind,
    id: &str,
) -> Result<Option<ScimRecord>, StoreError> {
    let q = format!("SELECT {COLUMNS} FROM {} WHERE source = $1 AND external_id = $2", table(kind));
    match sqlx::query(&q).bind(src).bind(id).fetch_optional(pool).await? {
        Some(r) => record(&r),
        None => Ok(None),
    }
}

pub(super) async fn scim_find(
    pool: &PgPool,
    src: &str,
    kind: ScimKind,
    index: ScimIndex,
    value: &str,
) -> Result<Vec<ScimRecord>, StoreError> {
    let (column, v) = match index {
        ScimIndex::Name => (name_column(kind), value.to_lowercase()),
        ScimIndex::ExternalId => ("external_ref", value.to_string()),
        ScimIndex::Email if kind == ScimKind::User => {
            let q = format!(
                "SELECT {COLUMNS} FROM dir_users WHERE source = $1 AND external_id IN
                 (SELECT user_id FROM dir_user_emails WHERE source = $1 AND email_lc = $2) ORDER BY seq"
            );
            let mut out = Vec::new();
            for r in sqlx::query(&q).bind(src).bind(value.to_lowercase()).fetch_all(pool).await? {
                out.extend(record(&r)?);
            }
            return Ok(out);
        }
        ScimIndex::Email => return Ok(Vec::new()),
    };
    let q = format!("SELECT {COLUMNS} FROM {} WHERE source = $1 AND {column} = $2 ORDER BY seq", table(kind));
    let mut out = Vec::new();
    for r in sqlx::query(&q).bind(src).bind(v).fetch_all(pool).await? {
        out.extend(record(&r)?);
    }
    Ok(out)
}

pub(super) async fn scim_scan(
    pool: &PgPool,
    src: &str,
    kind: ScimKind,
    offset: u64,
    limit: u64,
) -> Result<Vec<ScimRecord>, StoreError> {
    let q = format!(
        "SELECT {COLUMNS} FROM {} WHERE source = $1 AND resource IS NOT NULL ORDER BY seq LIMIT $2 OFFSET $3",
        table(kind)
    );
    let mut out = Vec::new();
    for r in sqlx::query(&q).bind(src).bind(limit as i64).bind(offset as i64).fetch_all(pool).await? {
        out.extend(record(&r)?);
    }
    Ok(out)
}

pub(super) async fn scim_count(pool: &PgPool, src: &str, kind: ScimKind) -> Result<u64, StoreError> {
    let q = format!("SELECT COUNT(*) AS n FROM {} WHERE source = $1 AND resource IS NOT NULL", table(kind));
    let n: i64 = sqlx::query(&q).bind(src).fetch_one(pool).await?.try_get("n")?;
    Ok(n.max(0) as u64)
}

pub(super) async fn scim_put(pool: &PgPool, src: &str, w: ScimWrite) -> Result<ScimRecord, StoreError> {
    let t = table(w.kind);
    let mut tx = pool.begin().await?;
    // One SCIM writer per source at a time, whichever replica: the uniqueness check and the write see the same
    // rows. The lock ends with the transaction.
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1))").bind(format!("scim:{src}")).execute(&mut *tx).await?;
    let record = put_in(&mut tx, src, t, &w).await?;
    sqlx::query(FORGET_QUIET).execute(&mut *tx).await?;
    notify(&mut tx, src).await?;
    tx.commit().await?;
    Ok(record)
}

/// Tells the leader (on commit) that the source's view changed.
async fn notify(conn: &mut PgConnection, src: &str) -> Result<(), StoreError> {
    sqlx::query("SELECT pg_notify($1, $2)").bind(super::CHANGES_CHANNEL).bind(src).execute(&mut *conn).await?;
    Ok(())
}

async fn put_in(conn: &mut PgConnection, src: &str, t: &str, w: &ScimWrite) -> Result<ScimRecord, StoreError> {
    let ts = now();
    let current = sqlx::query(&format!("SELECT rev, created_at FROM {t} WHERE source = $1 AND external_id = $2"))
        .bind(src)
        .bind(&w.id)
        .fetch_optional(&mut *conn)
        .await?;
    let have = match &current {
        Some(r) => Some((r.try_get::<i64, _>("rev")?, r.try_get::<Option<String>, _>("created_at")?)),
        None => None,
    };
    let rev = next_rev(w.expect, &w.id, have.as_ref().map(|h| h.0))?;
    let created = have.and_then(|h| h.1).unwrap_or_else(|| ts.clone());
    let name_lc = w.name.to_lowercase();
    let clash = sqlx::query(&format!(
        "SELECT external_id FROM {t} WHERE source = $1 AND {} = $2 AND external_id != $3 AND resource IS NOT NULL LIMIT 1",
        if t == "dir_users" { "user_name_lc" } else { "name_lc" }
    ))
    .bind(src)
    .bind(&name_lc)
    .bind(&w.id)
    .fetch_optional(&mut *conn)
    .await?;
    if let Some(other) = clash {
        let other: String = other.try_get("external_id")?;
        return Err(StoreError::Conflict(format!("{:?} is already used by resource {other}", w.name)));
    }
    let resource = json(&w.resource)?;
    let body = match (&w.identity, &w.group) {
        (Some(i), _) => json(i)?,
        (None, Some(g)) => group_body(g)?,
        (None, None) => "{}".to_string(),
    };
    let h = hash(&body);
    if t == "dir_users" {
        sqlx::query(
            "INSERT INTO dir_users (source, external_id, user_name_lc, email_lc, external_ref, body, hash, resource, rev,
             created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
             ON CONFLICT (source, external_id) DO UPDATE SET user_name_lc = $3, email_lc = $4, external_ref = $5,
             body = $6, hash = $7, resource = $8, rev = $9, updated_at = $11",
        )
        .bind(src)
        .bind(&w.id)
        .bind(&name_lc)
        .bind(w.emails.first().map(|e| e.to_lowercase()))
        .bind(&w.external_ref)
        .bind(&body)
        .bind(&h)
        .bind(&resource)
        .bind(rev)
        .bind(&created)
        .bind(&ts)
        .execute(&mut *conn)
        .await?;
        replace_emails(conn, src, &w.id, &w.emails).await?;
    } else {
        sqlx::query(
            "INSERT INTO dir_groups (source, external_id, name_lc, external_ref, body, hash, resource, rev, created_at,
             updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
             ON CONFLICT (source, external_id) DO UPDATE SET name_lc = $3, external_ref = $4, body = $5, hash = $6,
             resource = $7, rev = $8, updated_at = $10",
        )
        .bind(src)
        .bind(&w.id)
        .bind(&name_lc)
        .bind(&w.external_ref)
        .bind(&body)
        .bind(&h)
        .bind(&resource)
        .bind(rev)
        .bind(&created)
        .bind(&ts)
        .execute(&mut *conn)
        .await?;
        match &w.members {
            Some(MemberChange::Replace(all)) => {
                require_members(conn, src, all).await?;
                replace_members(conn, src, &w.id, all).await?
            }
            Some(MemberChange::Delta { add, remove }) => {
                for id in remove {
                    sqlx::query("DELETE FROM dir_members WHERE source = $1 AND group_id = $2 AND member_id = $3")
                        .bind(src)
                        .bind(&w.id)
                        .bind(id)
                        .execute(&mut *conn)
                        .await?;
                }
                require_members(conn, src, add).await?;
                insert_members(conn, src, &w.id, add).await?;
            }
            None => {}
        }
    }
    sqlx::query(
        "INSERT INTO dir_views (source, taken_at) VALUES ($1, $2) ON CONFLICT (source) DO UPDATE SET taken_at = $2",
    )
    .bind(src)
    .bind(&ts)
    .execute(&mut *conn)
    .await?;
    Ok(ScimRecord {
        id: w.id.clone(),
        resource: w.resource.clone(),
        rev,
        created_at: time(Some(created)),
        updated_at: time(Some(ts)),
    })
}

pub(super) async fn scim_delete(
    pool: &PgPool,
    src: &str,
    kind: ScimKind,
    id: &str,
    rev: Option<i64>,
) -> Result<bool, StoreError> {
    let mut tx = pool.begin().await?;
    let t = table(kind);
    // FOR UPDATE: concurrent deletes (or a write) of this resource wait here, so the version check holds until the
    // delete commits and only one of several deletes reports that it deleted.
    let Some(cur) = sqlx::query(&format!("SELECT rev FROM {t} WHERE source = $1 AND external_id = $2 FOR UPDATE"))
        .bind(src)
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?
    else {
        return Ok(false);
    };
    if rev.is_some_and(|want| want != cur.try_get::<i64, _>("rev").unwrap_or(-1)) {
        return Err(StoreError::Precondition { expected: rev.unwrap_or_default().to_string() });
    }
    sqlx::query(&format!("DELETE FROM {t} WHERE source = $1 AND external_id = $2"))
        .bind(src)
        .bind(id)
        .execute(&mut *tx)
        .await?;
    if kind == ScimKind::User {
        sqlx::query("DELETE FROM dir_user_emails WHERE source = $1 AND user_id = $2")
            .bind(src)
            .bind(id)
            .execute(&mut *tx)
            .await?;
    }
    // A deleted user leaves every group; a deleted group takes its memberships (and its place in parents).
    sqlx::query("DELETE FROM dir_members WHERE source = $1 AND (member_id = $2 OR group_id = $2)")
        .bind(src)
        .bind(id)
        .execute(&mut *tx)
        .await?;
    sqlx::query(FORGET_QUIET).execute(&mut *tx).await?;
    tx.commit().await?;
    Ok(true)
}

pub(super) async fn scim_members(
    pool: &PgPool,
    src: &str,
    group: &str,
) -> Result<Vec<(String, MemberKind)>, StoreError> {
    let mut out = Vec::new();
    for r in
        sqlx::query("SELECT kind, member_id FROM dir_members WHERE source = $1 AND group_id = $2 ORDER BY member_id")
            .bind(src)
            .bind(group)
            .fetch_all(pool)
            .await?
    {
        let kind = kind_of(&r.try_get::<String, _>("kind")?);
        out.push((r.try_get("member_id")?, kind));
    }
    Ok(out)
}

pub(super) async fn scim_kinds(
    pool: &PgPool,
    src: &str,
    ids: &[String],
) -> Result<HashMap<String, MemberKind>, StoreError> {
    let mut conn = pool.acquire().await?;
    let mut out = HashMap::new();
    for (id, kind) in resources_among(&mut conn, src, ids, false).await? {
        out.entry(id).or_insert(kind);
    }
    Ok(out)
}

pub(super) async fn scim_groups_of(pool: &PgPool, src: &str, user: &str) -> Result<Vec<(String, String)>, StoreError> {
    let mut out = Vec::new();
    let mut seen = BTreeSet::new();
    for r in sqlx::query(
        "SELECT m.group_id AS id, g.body AS body FROM dir_members m JOIN dir_groups g
         ON g.source = m.source AND g.external_id = m.group_id
         WHERE m.source = $1 AND m.member_id = $2 AND m.kind = 'user' ORDER BY m.group_id",
    )
    .bind(src)
    .bind(user)
    .fetch_all(pool)
    .await?
    {
        let id: String = r.try_get("id")?;
        let body: Value = serde_json::from_str(&r.try_get::<String, _>("body")?).unwrap_or(Value::Null);
        if seen.insert(id.clone()) {
            out.push((id, body["name"].as_str().unwrap_or_default().to_string()));
        }
    }
    Ok(out)
}
