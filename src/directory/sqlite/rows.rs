//! The directory as rows in SQLite: a full snapshot diffed into `dir_users` / `dir_groups` / `dir_members` (only
//! the rows that changed are written), a source's view assembled back from them, and the SCIM resources of a push
//! source written together with their rows in one transaction. Nothing here knows what a rule or a plan is.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::{Row, Sqlite, SqliteConnection, SqlitePool, Transaction};

use super::{json, now};
use crate::directory::rows::{corrupt, group_body, hash, hash_json, kind_of, kind_text, next_rev};
use crate::directory::{
    MemberChange, MemberKind, ScimIndex, ScimKind, ScimRecord, ScimWrite, StoreError, FORGET_QUIET,
};
use crate::model::{Group, Identity, Snapshot, Unreadable};

pub(super) async fn save_snapshot(pool: &SqlitePool, snap: &Snapshot) -> Result<(), StoreError> {
    let src = snap.source.as_str();
    let ts = now();
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    // Users.
    let mut old: HashMap<String, String> = HashMap::new();
    for r in
        sqlx::query("SELECT external_id, hash FROM dir_users WHERE source = ?1").bind(src).fetch_all(&mut *tx).await?
    {
        old.insert(r.try_get("external_id")?, r.try_get("hash")?);
    }
    let mut buf = Vec::with_capacity(512);
    let mut changed = Vec::new();
    for u in &snap.users {
        // Hashed from a reused buffer: an unchanged user (most of them, in a scheduled run) costs no JSON string.
        let h = hash_json(&mut buf, b"", u)?;
        if old.remove(&u.external_id).as_deref() == Some(h.as_str()) {
            continue;
        }
        changed.push((u, json(u)?, h));
    }
    for chunk in changed.chunks(super::ROWS_PER_STATEMENT) {
        let mut q = sqlx::QueryBuilder::<Sqlite>::new(
            "INSERT INTO dir_users (source, external_id, user_name_lc, email_lc, body, hash, updated_at) ",
        );
        q.push_values(chunk, |mut b, (u, body, h)| {
            b.push_bind(src)
                .push_bind(u.external_id.as_str())
                .push_bind(u.user_name.to_lowercase())
                .push_bind(u.email.as_deref().map(str::to_lowercase))
                .push_bind(body.as_str())
                .push_bind(h.as_str())
                .push_bind(ts.as_str());
        });
        q.push(
            " ON CONFLICT(source, external_id) DO UPDATE SET user_name_lc = excluded.user_name_lc, email_lc = \
             excluded.email_lc, body = excluded.body, hash = excluded.hash, updated_at = excluded.updated_at, \
             rev = rev + 1",
        );
        q.build().persistent(false).execute(&mut *tx).await?;
    }
    let gone: Vec<&str> = old.keys().map(String::as_str).collect();
    for chunk in gone.chunks(super::ROWS_PER_STATEMENT) {
        let mut q = sqlx::QueryBuilder::<Sqlite>::new("DELETE FROM dir_users WHERE source = ");
        q.push_bind(src).push(" AND external_id IN (");
        let mut list = q.separated(", ");
        for id in chunk {
            list.push_bind(*id);
        }
        q.push(")");
        q.build().persistent(false).execute(&mut *tx).await?;
    }
    // Groups, and their members when the group changed.
    let mut old: HashMap<String, String> = HashMap::new();
    for r in
        sqlx::query("SELECT external_id, hash FROM dir_groups WHERE source = ?1").bind(src).fetch_all(&mut *tx).await?
    {
        old.insert(r.try_get("external_id")?, r.try_get("hash")?);
    }
    for g in &snap.groups {
        let body = group_body(g)?;
        // The hash covers the members too, so a membership change rewrites the group's member rows.
        let h = hash_json(&mut buf, body.as_bytes(), &(&g.members, &g.member_groups))?;
        if old.remove(&g.external_id).as_deref() == Some(h.as_str()) {
            continue;
        }
        sqlx::query(
            "INSERT INTO dir_groups (source, external_id, name_lc, body, hash, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT(source, external_id) DO UPDATE SET name_lc = ?3, body = ?4, hash = ?5, updated_at = ?6,
             rev = rev + 1",
        )
        .bind(src)
        .bind(&g.external_id)
        .bind(g.name.to_lowercase())
        .bind(&body)
        .bind(&h)
        .bind(&ts)
        .execute(&mut *tx)
        .await?;
        let members: Vec<(String, MemberKind)> = g
            .members
            .iter()
            .map(|m| (m.clone(), MemberKind::User))
            .chain(g.member_groups.iter().map(|m| (m.clone(), MemberKind::Group)))
            .collect();
        replace_members(&mut tx, src, &g.external_id, &members).await?;
    }
    for gone in old.keys() {
        sqlx::query("DELETE FROM dir_groups WHERE source = ?1 AND external_id = ?2")
            .bind(src)
            .bind(gone)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM dir_members WHERE source = ?1 AND group_id = ?2")
            .bind(src)
            .bind(gone)
            .execute(&mut *tx)
            .await?;
    }
    touch_view(&mut tx, src, &snap.unreadable).await?;
    sqlx::query(FORGET_QUIET).execute(&mut *tx).await?;
    tx.commit().await?;
    Ok(())
}

async fn touch_view(tx: &mut Transaction<'_, Sqlite>, src: &str, unreadable: &[Unreadable]) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO dir_views (source, taken_at, unreadable) VALUES (?1, ?2, ?3)
         ON CONFLICT(source) DO UPDATE SET taken_at = ?2, unreadable = ?3",
    )
    .bind(src)
    .bind(now())
    .bind(json(&unreadable)?)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

async fn replace_members(
    conn: &mut SqliteConnection,
    src: &str,
    group: &str,
    members: &[(String, MemberKind)],
) -> Result<(), StoreError> {
    sqlx::query("DELETE FROM dir_members WHERE source = ?1 AND group_id = ?2")
        .bind(src)
        .bind(group)
        .execute(&mut *conn)
        .await?;
    insert_members(conn, src, group, members).await
}

/// A SCIM User's addresses, for filters on `emails.value`.
async fn replace_emails(
    conn: &mut SqliteConnection,
    src: &str,
    user: &str,
    emails: &[String],
) -> Result<(), StoreError> {
    sqlx::query("DELETE FROM dir_user_emails WHERE source = ?1 AND user_id = ?2")
        .bind(src)
        .bind(user)
        .execute(&mut *conn)
        .await?;
    for e in emails {
        sqlx::query("INSERT OR IGNORE INTO dir_user_emails (source, user_id, email_lc) VALUES (?1, ?2, ?3)")
            .bind(src)
            .bind(user)
            .bind(e.to_lowercase())
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

/// Every member being added is a resource of this source, of the kind given, checked inside the write's
/// transaction (which holds SQLite's one write lock, so no deletion can come between): the service resolved them
/// before, but a concurrent DELETE (from another request or replica) must not leave a membership of nobody.
async fn require_members(
    conn: &mut SqliteConnection,
    src: &str,
    members: &[(String, MemberKind)],
) -> Result<(), StoreError> {
    let ids: Vec<String> = members.iter().map(|(id, _)| id.clone()).collect();
    let found: HashSet<(String, MemberKind)> = resources_among(conn, src, &ids).await?.into_iter().collect();
    match members.iter().find(|m| !found.contains(*m)) {
        Some((id, _)) => Err(StoreError::MissingMember(id.clone())),
        None => Ok(()),
    }
}

/// Ids per query: well under SQLite's bound-parameter limit.
const KINDS_CHUNK: usize = 500;

/// Which of `ids` are Users and which are Groups of the source, in a query per 500 ids and kind.
async fn resources_among(
    conn: &mut SqliteConnection,
    src: &str,
    ids: &[String],
) -> Result<Vec<(String, MemberKind)>, StoreError> {
    let mut out = Vec::new();
    for chunk in ids.chunks(KINDS_CHUNK) {
        let marks = vec!["?"; chunk.len()].join(", ");
        for (t, kind) in [("dir_users", MemberKind::User), ("dir_groups", MemberKind::Group)] {
            let q = format!(
                "SELECT external_id FROM {t} WHERE source = ? AND resource IS NOT NULL AND external_id IN ({marks})"
            );
            let mut query = sqlx::query(&q).bind(src);
            for id in chunk {
                query = query.bind(id);
            }
            for r in query.fetch_all(&mut *conn).await? {
                out.push((r.try_get("external_id")?, kind));
            }
        }
    }
    Ok(out)
}

async fn insert_members(
    conn: &mut SqliteConnection,
    src: &str,
    group: &str,
    members: &[(String, MemberKind)],
) -> Result<(), StoreError> {
    for chunk in members.chunks(super::ROWS_PER_STATEMENT) {
        let mut q =
            sqlx::QueryBuilder::<Sqlite>::new("INSERT OR IGNORE INTO dir_members (source, group_id, kind, member_id) ");
        q.push_values(chunk, |mut b, (id, kind)| {
            b.push_bind(src).push_bind(group).push_bind(kind_text(*kind)).push_bind(id.as_str());
        });
        q.build().persistent(false).execute(&mut *conn).await?;
    }
    Ok(())
}

pub(super) async fn last_snapshot(pool: &SqlitePool, source: &str) -> Result<Option<Snapshot>, StoreError> {
    let Some(view) =
        sqlx::query("SELECT unreadable FROM dir_views WHERE source = ?1").bind(source).fetch_optional(pool).await?
    else {
        return Ok(None);
    };
    let unreadable: Vec<Unreadable> = serde_json::from_str(&view.try_get::<String, _>("unreadable")?)
        .map_err(|e| corrupt("unreadable entries", e))?;
    let mut users = Vec::new();
    for r in
        sqlx::query("SELECT body FROM dir_users WHERE source = ?1 ORDER BY rowid").bind(source).fetch_all(pool).await?
    {
        let u: Identity =
            serde_json::from_str(&r.try_get::<String, _>("body")?).map_err(|e| corrupt("directory user", e))?;
        users.push(u);
    }
    let mut members: BTreeMap<String, (Vec<String>, Vec<String>)> = BTreeMap::new();
    for r in
        sqlx::query("SELECT group_id, kind, member_id FROM dir_members WHERE source = ?1 ORDER BY group_id, member_id")
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
        sqlx::query("SELECT body FROM dir_groups WHERE source = ?1 ORDER BY rowid").bind(source).fetch_all(pool).await?
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

pub(super) fn table(kind: ScimKind) -> &'static str {
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

fn record(r: &sqlx::sqlite::SqliteRow) -> Result<Option<ScimRecord>, StoreError> {
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
    pool: &SqlitePool,
    src: &str,
    kind: ScimKind,
    id: &str,
) -> Result<Option<ScimRecord>, StoreError> {
    let q = format!("SELECT {COLUMNS} FROM {} WHERE source = ?1 AND external_id = ?2", table(kind));
    match sqlx::query(&q).bind(src).bind(id).fetch_optional(pool).await? {
        Some(r) => record(&r),
        None => Ok(None),
    }
}

pub(super) async fn scim_find(
    pool: &SqlitePool,
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
                "SELECT {COLUMNS} FROM dir_users WHERE source = ?1 AND external_id IN
                 (SELECT user_id FROM dir_user_emails WHERE source = ?1 AND email_lc = ?2) ORDER BY rowid"
            );
            let mut out = Vec::new();
            for r in sqlx::query(&q).bind(src).bind(value.to_lowercase()).fetch_all(pool).await? {
                out.extend(record(&r)?);
            }
            return Ok(out);
        }
        ScimIndex::Email => return Ok(Vec::new()),
    };
    let q = format!("SELECT {COLUMNS} FROM {} WHERE source = ?1 AND {column} = ?2 ORDER BY rowid", table(kind));
    let mut out = Vec::new();
    for r in sqlx::query(&q).bind(src).bind(v).fetch_all(pool).await? {
        out.extend(record(&r)?);
    }
    Ok(out)
}

pub(super) async fn scim_scan(
    pool: &SqlitePool,
    src: &str,
    kind: ScimKind,
    offset: u64,
    limit: u64,
) -> Result<Vec<ScimRecord>, StoreError> {
    let q = format!(
        "SELECT {COLUMNS} FROM {} WHERE source = ?1 AND resource IS NOT NULL ORDER BY rowid LIMIT ?2 OFFSET ?3",
        table(kind)
    );
    let mut out = Vec::new();
    for r in sqlx::query(&q).bind(src).bind(limit as i64).bind(offset as i64).fetch_all(pool).await? {
        out.extend(record(&r)?);
    }
    Ok(out)
}

pub(super) async fn scim_count(pool: &SqlitePool, src: &str, kind: ScimKind) -> Result<u64, StoreError> {
    let q = format!("SELECT COUNT(*) AS n FROM {} WHERE source = ?1 AND resource IS NOT NULL", table(kind));
    let n: i64 = sqlx::query(&q).bind(src).fetch_one(pool).await?.try_get("n")?;
    Ok(n.max(0) as u64)
}

pub(super) async fn put_in(
    conn: &mut SqliteConnection,
    src: &str,
    t: &str,
    w: &ScimWrite,
) -> Result<ScimRecord, StoreError> {
    let ts = now();
    let current = sqlx::query(&format!("SELECT rev, created_at FROM {t} WHERE source = ?1 AND external_id = ?2"))
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
        "SELECT external_id FROM {t} WHERE source = ?1 AND {} = ?2 AND external_id != ?3 AND resource IS NOT NULL LIMIT 1",
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
             created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)
             ON CONFLICT(source, external_id) DO UPDATE SET user_name_lc = ?3, email_lc = ?4, external_ref = ?5,
             body = ?6, hash = ?7, resource = ?8, rev = ?9, updated_at = ?11",
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
             updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
             ON CONFLICT(source, external_id) DO UPDATE SET name_lc = ?3, external_ref = ?4, body = ?5, hash = ?6,
             resource = ?7, rev = ?8, updated_at = ?10",
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
                    sqlx::query("DELETE FROM dir_members WHERE source = ?1 AND group_id = ?2 AND member_id = ?3")
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
        "INSERT INTO dir_views (source, taken_at) VALUES (?1, ?2) ON CONFLICT(source) DO UPDATE SET taken_at = ?2",
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

pub(super) async fn delete_in(
    conn: &mut SqliteConnection,
    src: &str,
    kind: ScimKind,
    id: &str,
    rev: Option<i64>,
) -> Result<bool, StoreError> {
    let t = table(kind);
    let Some(cur) = sqlx::query(&format!("SELECT rev FROM {t} WHERE source = ?1 AND external_id = ?2"))
        .bind(src)
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?
    else {
        return Ok(false);
    };
    if rev.is_some_and(|want| want != cur.try_get::<i64, _>("rev").unwrap_or(-1)) {
        return Err(StoreError::Precondition { expected: rev.unwrap_or_default().to_string() });
    }
    sqlx::query(&format!("DELETE FROM {t} WHERE source = ?1 AND external_id = ?2"))
        .bind(src)
        .bind(id)
        .execute(&mut *conn)
        .await?;
    if kind == ScimKind::User {
        sqlx::query("DELETE FROM dir_user_emails WHERE source = ?1 AND user_id = ?2")
            .bind(src)
            .bind(id)
            .execute(&mut *conn)
            .await?;
    }
    // A deleted user leaves every group; a deleted group takes its memberships (and its place in parents).
    sqlx::query("DELETE FROM dir_members WHERE source = ?1 AND (member_id = ?2 OR group_id = ?2)")
        .bind(src)
        .bind(id)
        .execute(&mut *conn)
        .await?;
    Ok(true)
}

pub(super) async fn scim_members(
    pool: &SqlitePool,
    src: &str,
    group: &str,
) -> Result<Vec<(String, MemberKind)>, StoreError> {
    let mut out = Vec::new();
    for r in
        sqlx::query("SELECT kind, member_id FROM dir_members WHERE source = ?1 AND group_id = ?2 ORDER BY member_id")
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
    pool: &SqlitePool,
    src: &str,
    ids: &[String],
) -> Result<HashMap<String, MemberKind>, StoreError> {
    let mut conn = pool.acquire().await?;
    let mut out = HashMap::new();
    for (id, kind) in resources_among(&mut conn, src, ids).await? {
        out.entry(id).or_insert(kind);
    }
    Ok(out)
}

pub(super) async fn scim_groups_of(
    pool: &SqlitePool,
    src: &str,
    user: &str,
) -> Result<Vec<(String, String)>, StoreError> {
    let mut out = Vec::new();
    let mut seen = BTreeSet::new();
    for r in sqlx::query(
        "SELECT m.group_id AS id, g.body AS body FROM dir_members m JOIN dir_groups g
         ON g.source = m.source AND g.external_id = m.group_id
         WHERE m.source = ?1 AND m.member_id = ?2 AND m.kind = 'user' ORDER BY m.group_id",
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

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::SqliteStore;
    use crate::directory::*;
    use crate::model::{EntryKind, Grants, Group, Identity, Snapshot, Unreadable};

    fn user(id: &str, name: &str) -> Identity {
        Identity {
            external_id: id.into(),
            user_name: name.into(),
            email: Some(format!("{name}@example.com")),
            display_name: None,
            active: true,
            groups: vec![],
            overrides: Grants::default(),
        }
    }

    fn snapshot(users: Vec<Identity>, members: &[&str]) -> Snapshot {
        Snapshot {
            source: "corp".into(),
            users,
            groups: vec![
                Group {
                    external_id: "g1".into(),
                    name: "eng".into(),
                    dn: Some("cn=eng".into()),
                    members: members.iter().map(|s| s.to_string()).collect(),
                    member_groups: vec!["g2".into()],
                },
                Group {
                    external_id: "g2".into(),
                    name: "sub".into(),
                    dn: None,
                    members: vec![],
                    member_groups: vec![],
                },
            ],
            unreadable: vec![Unreadable {
                external_id: Some("9".into()),
                kind: EntryKind::User,
                entry: "uid=x".into(),
                reason: "no uid".into(),
            }],
        }
    }

    #[tokio::test]
    async fn the_store_suite_passes_on_sqlite() {
        crate::directory::suite::check(&SqliteStore::in_memory().await.unwrap()).await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        crate::directory::suite::check(&SqliteStore::open(&dir.path().join("s.db")).await.unwrap()).await.unwrap();
    }

    /// The reconciler's transactions read before they write (the snapshot's stored hashes, the outbox's kept
    /// ages). In WAL mode a deferred transaction that has read cannot take the write lock once another connection
    /// committed meanwhile: SQLite answers SQLITE_BUSY at once, without the busy timeout. SCIM writes commit
    /// all the time, so every transaction that writes starts with `BEGIN IMMEDIATE`.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn reconciler_writes_and_scim_writes_never_refuse_each_other() {
        let dir = tempfile::tempdir().unwrap();
        let s = std::sync::Arc::new(SqliteStore::open(&dir.path().join("s.db")).await.unwrap());
        let scim = {
            let s = s.clone();
            tokio::spawn(async move {
                for i in 0..400 {
                    let name = format!("u{i}");
                    let w = ScimWrite {
                        kind: ScimKind::User,
                        id: name.clone(),
                        resource: json!({"id": name, "userName": name}),
                        identity: Some(user(&name, &name)),
                        group: None,
                        members: None,
                        name: name.clone(),
                        emails: vec![],
                        external_ref: None,
                        expect: Expect::Absent,
                    };
                    s.scim_put("push", w).await.unwrap();
                }
            })
        };
        let op = |t: &str| crate::reconcile::op::Op::CreateTeam {
            team_id: t.into(),
            request: crate::litellm::types::TeamRequest { team_id: t.into(), ..Default::default() },
        };
        for i in 0..60 {
            let users: Vec<Identity> = (0..=i).map(|n| user(&n.to_string(), &format!("p{n}"))).collect();
            s.save_snapshot(&snapshot(users, &["1"])).await.unwrap_or_else(|e| panic!("snapshot {i}: {e}"));
            s.replace_outbox(&format!("run-{i}"), &[op("a"), op(&format!("t{i}"))])
                .await
                .unwrap_or_else(|e| panic!("outbox {i}: {e}"));
            let ids: Vec<i64> = s.outbox().await.unwrap().iter().map(|e| e.id).collect();
            let done: Vec<OutboxUpdate> = ids.iter().map(|id| OutboxUpdate::Done { id: *id, writes: vec![] }).collect();
            s.record_results(&done).await.unwrap_or_else(|e| panic!("results {i}: {e}"));
        }
        scim.await.unwrap();
    }

    /// Schema 4 fills the address index from the resources a store of schema 3 holds.
    #[tokio::test]
    async fn the_address_index_is_filled_from_stored_resources() {
        let s = SqliteStore::in_memory().await.unwrap();
        let w = ScimWrite {
            kind: ScimKind::User,
            id: "u1".into(),
            resource: json!({"id": "u1", "userName": "ann",
                             "emails": [{"value": "Ann@X.org"}, {"value": "a2@x.org"}, {"type": "no value"}]}),
            identity: Some(user("u1", "ann")),
            group: None,
            members: None,
            name: "ann".into(),
            emails: vec![],
            external_ref: None,
            expect: Expect::Absent,
        };
        s.scim_put("push", w).await.unwrap();
        let find = |v: &'static str| s.scim_find("push", ScimKind::User, ScimIndex::Email, v);
        assert!(find("a2@x.org").await.unwrap().is_empty(), "written without addresses");
        let migration = include_str!("../../../migrations/sqlite/0004_scim_user_emails.sql");
        let fill = &migration[migration.find("INSERT OR IGNORE").unwrap()..];
        sqlx::query(fill).execute(&s.pool).await.unwrap();
        assert_eq!(find("A2@x.org").await.unwrap().len(), 1);
        assert_eq!(find("ann@x.org").await.unwrap().len(), 1);
    }

    #[tokio::test]
    async fn unchanged_rows_are_not_written_again() {
        let s = SqliteStore::in_memory().await.unwrap();
        let revs = |s: &SqliteStore| {
            let pool = s.pool.clone();
            async move {
                sqlx::query_as::<_, (String, i64)>("SELECT external_id, rev FROM dir_users ORDER BY external_id")
                    .fetch_all(&pool)
                    .await
                    .unwrap()
            }
        };
        s.save_snapshot(&snapshot(vec![user("1", "alice"), user("2", "bob")], &["1", "2"])).await.unwrap();
        let mut bob = user("2", "bob");
        bob.active = false;
        s.save_snapshot(&snapshot(vec![user("1", "alice"), bob, user("3", "carol")], &["2", "3"])).await.unwrap();
        assert_eq!(revs(&s).await, vec![("1".into(), 1), ("2".into(), 2), ("3".into(), 1)]);
    }

    #[tokio::test]
    async fn a_store_written_by_schema_1_is_carried_into_rows() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.db");
        // Schema 1 exactly as the previous release wrote it: its migration, and a snapshot blob.
        let migrations = dir.path().join("migrations");
        std::fs::create_dir(&migrations).unwrap();
        std::fs::copy(
            concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/sqlite/0001_init.sql"),
            migrations.join("0001_init.sql"),
        )
        .unwrap();
        let opts = sqlx::sqlite::SqliteConnectOptions::new().filename(&path).create_if_missing(true);
        let pool = sqlx::SqlitePool::connect_with(opts).await.unwrap();
        sqlx::migrate::Migrator::new(migrations.as_path()).await.unwrap().run(&pool).await.unwrap();
        let old = json!({"source": "corp", "users": [
            {"external_id": "1", "user_name": "Alice", "email": "Alice@Example.com", "display_name": null, "active": true,
             "groups": ["g1"], "overrides": {"max_budget": 5.0}},
            {"external_id": "2", "user_name": "bob", "email": null, "display_name": "Bob", "active": false}],
            "groups": [{"external_id": "g1", "name": "eng", "dn": "cn=eng", "members": ["2"], "member_groups": ["g0"]}]});
        sqlx::query("INSERT INTO snapshots (source, taken_at, body) VALUES ('corp', '2026-11-30T00:00:00Z', ?1)")
            .bind(old.to_string())
            .execute(&pool)
            .await
            .unwrap();
        pool.close().await;

        let s = SqliteStore::open(&path).await.unwrap();
        let snap = s.last_snapshot("corp").await.unwrap().expect("carried over");
        let want: Snapshot = serde_json::from_value(old).unwrap();
        assert_eq!(snap, want);
        // The next full read of the same data rewrites each row once (its hash was unknown), then never again.
        s.save_snapshot(&want).await.unwrap();
        assert_eq!(s.last_snapshot("corp").await.unwrap(), Some(want));
    }
}
