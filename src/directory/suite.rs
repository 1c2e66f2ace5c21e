//! The store conformance suite: what every [`Store`] must do, as plain checks any backend runs (SQLite in the
//! unit tests, PostgreSQL in the integration tests against a real server). Each check returns what went wrong
//! instead of panicking, so the suite is ordinary library code; nothing else calls it.

use serde_json::json;

use super::*;
use crate::litellm::types::{TeamRequest, TeamRow};
use crate::model::{EntryKind, Grants, Group, Identity, Snapshot, Unreadable};

macro_rules! ensure {
    ($cond:expr, $($msg:tt)+) => {
        if !$cond {
            return Err(format!($($msg)+));
        }
    };
}

fn e(what: &str, err: StoreError) -> String {
    format!("{what}: {err}")
}

/// Runs every check against an empty store.
pub async fn check(store: &dyn Store) -> Result<(), String> {
    outbox_and_ledger(store).await?;
    meta_and_lease(store).await?;
    snapshots_as_rows(store).await?;
    scim_resources(store).await?;
    quiet_record(store).await?;
    large_batches(store).await?;
    Ok(())
}

/// More rows than one statement carries (the SQLite store writes 500 rows a statement): every id in its place,
/// and of several writes to one row in one batch the last wins, as if they were applied one by one.
async fn large_batches(s: &dyn Store) -> Result<(), String> {
    let n = 1_203;
    s.replace_ledger(&Ledger::default()).await.map_err(|x| e("replace_ledger", x))?;
    let ops: Vec<Op> = (0..n).map(|i| team_op(&format!("t{i:04}"))).collect();
    let ids = s.replace_outbox("run-big", &ops).await.map_err(|x| e("replace_outbox", x))?;
    let back = s.outbox().await.map_err(|x| e("outbox", x))?;
    ensure!(back.len() == n && ids.len() == n, "{} entries, {} ids", back.len(), ids.len());
    for (i, (entry, id)) in back.iter().zip(&ids).enumerate() {
        ensure!(entry.id == *id && entry.op.target() == format!("team t{i:04}"), "entry {i}: {entry:?} id {id}");
    }
    let user_row = |id: &str, budget: f64| -> Result<Box<crate::litellm::types::UserRow>, String> {
        serde_json::from_value(json!({"user_id": id, "max_budget": budget})).map(Box::new).map_err(|x| x.to_string())
    };
    // Each op's result: a team, and a user written twice (the second wins); every third user is then deleted.
    let updates: Vec<OutboxUpdate> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| {
            let u = format!("u{i:04}");
            let mut writes = vec![
                LedgerWrite::PutTeam(Box::new(team_row(&format!("t{i:04}")))),
                LedgerWrite::PutUser(user_row(&u, 1.0)?),
                LedgerWrite::PutUser(user_row(&u, 2.0)?),
            ];
            if i % 3 == 0 {
                writes.push(LedgerWrite::DeleteUser(u));
            }
            Ok(if i == n - 1 {
                OutboxUpdate::Failed { id: *id, error: "no".into(), permanent: true, writes }
            } else {
                OutboxUpdate::Done { id: *id, writes }
            })
        })
        .collect::<Result<_, String>>()?;
    s.record_results(&updates).await.map_err(|x| e("record_results", x))?;
    let left = s.outbox().await.map_err(|x| e("outbox", x))?;
    ensure!(left.len() == 1 && left[0].id == ids[n - 1] && left[0].status == OutboxStatus::Failed, "{left:?}");
    let l = s.load_ledger().await.map_err(|x| e("load_ledger", x))?;
    ensure!(l.teams.len() == n, "{} teams", l.teams.len());
    ensure!(l.users.len() == n - n.div_ceil(3), "{} users", l.users.len());
    ensure!(l.users.values().all(|u| u.max_budget == Some(2.0)), "the last write wins");
    ensure!(!l.users.contains_key("u0000") && l.users.contains_key("u0001"), "deleted after its put");
    s.replace_outbox("run-big-2", &[]).await.map_err(|x| e("replace_outbox", x))?;
    s.replace_ledger(&Ledger::default()).await.map_err(|x| e("replace_ledger", x))?;
    Ok(())
}

/// The quiet record: a compare-and-set, and deleted by every change of a source's view (a snapshot stored, a SCIM
/// write or delete), whoever makes it.
async fn quiet_record(s: &dyn Store) -> Result<(), String> {
    let q = meta::QUIET;
    s.set_meta(q, "claim:r1").await.map_err(|x| e("set_meta", x))?;
    ensure!(!s.replace_meta(q, "claim:r0", "{}").await.map_err(|x| e("replace_meta", x))?, "another claim");
    ensure!(s.replace_meta(q, "claim:r1", "{\"r\":1}").await.map_err(|x| e("replace_meta", x))?, "its own claim");
    let now = s.get_meta(q).await.map_err(|x| e("get_meta", x))?;
    ensure!(now.as_deref() == Some("{\"r\":1}"), "the record replaced the claim: {now:?}");
    ensure!(!s.replace_meta("absent-key", "", "x").await.map_err(|x| e("replace_meta", x))?, "no such key");
    for what in ["a stored snapshot", "a SCIM write", "a SCIM delete"] {
        s.set_meta(q, "{}").await.map_err(|x| e("set_meta", x))?;
        let wrote = match what {
            "a stored snapshot" => s.save_snapshot(&Snapshot::empty("quiet-src")).await,
            "a SCIM write" => s.scim_put("quiet-scim", put("q1", "Quinn", Expect::Absent)).await.map(drop),
            _ => s.scim_delete("quiet-scim", ScimKind::User, "q1", None).await.map(drop),
        };
        wrote.map_err(|x| e(what, x))?;
        ensure!(s.get_meta(q).await.map_err(|x| e("get_meta", x))?.is_none(), "{what} must forget the quiet record");
    }
    Ok(())
}

fn team_op(team: &str) -> Op {
    Op::CreateTeam { team_id: team.into(), request: TeamRequest { team_id: team.into(), ..Default::default() } }
}

fn team_row(id: &str) -> TeamRow {
    TeamRow::created(&TeamRequest { team_id: id.into(), ..Default::default() })
}

async fn outbox_and_ledger(s: &dyn Store) -> Result<(), String> {
    let ids = s.replace_outbox("run-1", &[team_op("a"), team_op("b")]).await.map_err(|x| e("replace_outbox", x))?;
    let pending = s.outbox().await.map_err(|x| e("outbox", x))?;
    ensure!(pending.iter().map(|e| e.op.target()).collect::<Vec<_>>() == ["team a", "team b"], "order: {pending:?}");
    s.record_results(&[
        OutboxUpdate::Done { id: ids[0], writes: vec![LedgerWrite::PutTeam(Box::new(team_row("a")))] },
        OutboxUpdate::Failed { id: ids[1], error: "LiteLLM said no".into(), permanent: true, writes: vec![] },
    ])
    .await
    .map_err(|x| e("record_results", x))?;
    let left = s.outbox().await.map_err(|x| e("outbox", x))?;
    ensure!(left.len() == 1 && left[0].status == OutboxStatus::Failed && left[0].attempts == 1, "{left:?}");
    ensure!(s.load_ledger().await.map_err(|x| e("load_ledger", x))?.teams.len() == 1, "the team is in the ledger");
    let st = s.outbox_stats().await.map_err(|x| e("outbox_stats", x))?;
    ensure!((st.pending, st.failed) == (0, 1), "{st:?}");
    // A new plan replaces the outbox, failed entries included; one planned again unchanged keeps its age.
    s.replace_outbox("run-2", &[team_op("c")]).await.map_err(|x| e("replace_outbox", x))?;
    let first = s.outbox().await.map_err(|x| e("outbox", x))?[0].clone();
    ensure!(first.run_id == "run-2", "{first:?}");
    s.record_results(&[OutboxUpdate::Failed { id: first.id, error: "down".into(), permanent: false, writes: vec![] }])
        .await
        .map_err(|x| e("record_results", x))?;
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    s.replace_outbox("run-3", &[team_op("c"), team_op("d")]).await.map_err(|x| e("replace_outbox", x))?;
    let now = s.outbox().await.map_err(|x| e("outbox", x))?;
    ensure!((now[0].created_at, now[0].attempts) == (first.created_at, 1), "kept its age: {now:?}");
    ensure!(now[1].created_at > first.created_at && now[1].attempts == 0, "{now:?}");
    // A create keeps its desired user through the outbox.
    let d = crate::mapper::DesiredUser { user_id: "alice".into(), user_name: "alice".into(), ..Default::default() };
    let create = Op::CreateUser {
        user_id: "alice".into(),
        key: d.key.clone(),
        request: Default::default(),
        desired: Box::new(d.clone()),
    };
    s.replace_outbox("run-4", &[create]).await.map_err(|x| e("replace_outbox", x))?;
    match &s.outbox().await.map_err(|x| e("outbox", x))?[0].op {
        Op::CreateUser { desired, .. } => ensure!(**desired == d, "desired user lost"),
        other => return Err(format!("{other:?}")),
    }
    // The ledger as a whole.
    let mut l = Ledger::default();
    l.teams.insert("x".into(), team_row("x"));
    s.replace_ledger(&l).await.map_err(|x| e("replace_ledger", x))?;
    ensure!(s.load_ledger().await.map_err(|x| e("load_ledger", x))? == l, "ledger round trip");
    s.replace_outbox("run-5", &[]).await.map_err(|x| e("replace_outbox", x))?;
    Ok(())
}

async fn meta_and_lease(s: &dyn Store) -> Result<(), String> {
    ensure!(s.get_meta("k").await.map_err(|x| e("get_meta", x))?.is_none(), "no meta yet");
    s.set_meta("k", "v1").await.map_err(|x| e("set_meta", x))?;
    s.set_meta("k", "v2").await.map_err(|x| e("set_meta", x))?;
    ensure!(s.get_meta("k").await.map_err(|x| e("get_meta", x))?.as_deref() == Some("v2"), "meta overwrite");
    let ttl = std::time::Duration::from_secs(30);
    ensure!(s.acquire_lease("a", ttl).await.map_err(|x| e("lease", x))?, "a free lease is taken");
    ensure!(s.acquire_lease("a", ttl).await.map_err(|x| e("lease", x))?, "the holder renews it");
    ensure!(!s.acquire_lease("b", ttl).await.map_err(|x| e("lease", x))?, "another holder waits");
    ensure!(s.lease_holder().await.map_err(|x| e("lease", x))?.as_deref() == Some("a"), "holder");
    s.release_lease("a").await.map_err(|x| e("lease", x))?;
    ensure!(s.acquire_lease("b", std::time::Duration::ZERO).await.map_err(|x| e("lease", x))?, "released");
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    ensure!(s.acquire_lease("c", ttl).await.map_err(|x| e("lease", x))?, "an expired lease is taken over");
    s.release_lease("c").await.map_err(|x| e("lease", x))?;
    ensure!(s.still_leader().await.map_err(|x| e("still_leader", x))?, "an unfenced store may write");
    Ok(())
}

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
            Group { external_id: "g2".into(), name: "sub".into(), dn: None, members: vec![], member_groups: vec![] },
        ],
        unreadable: vec![Unreadable {
            external_id: Some("9".into()),
            kind: EntryKind::User,
            entry: "uid=x".into(),
            reason: "no uid".into(),
        }],
    }
}

async fn snapshots_as_rows(s: &dyn Store) -> Result<(), String> {
    ensure!(s.last_snapshot("corp").await.map_err(|x| e("last_snapshot", x))?.is_none(), "no view yet");
    for snap in [
        snapshot(vec![user("1", "alice"), user("2", "bob")], &["1", "2"]),
        {
            let mut bob = user("2", "bob");
            bob.active = false;
            snapshot(vec![user("1", "alice"), bob, user("3", "carol")], &["2", "3"])
        },
        snapshot(vec![user("3", "carol")], &["3"]),
    ] {
        s.save_snapshot(&snap).await.map_err(|x| e("save_snapshot", x))?;
        let back = s.last_snapshot("corp").await.map_err(|x| e("last_snapshot", x))?;
        ensure!(back.as_ref() == Some(&snap), "round trip:\n{back:?}\nwant\n{snap:?}");
    }
    Ok(())
}

fn put(id: &str, name: &str, expect: Expect) -> ScimWrite {
    ScimWrite {
        kind: ScimKind::User,
        id: id.into(),
        resource: json!({"id": id, "userName": name}),
        identity: Some(user(id, name)),
        group: None,
        members: None,
        name: name.into(),
        emails: vec![format!("{name}@Example.com"), format!("{name}.home@example.org")],
        external_ref: Some(format!("ext-{id}")),
        expect,
    }
}

async fn scim_resources(s: &dyn Store) -> Result<(), String> {
    let a = s.scim_put("scim", put("u1", "Alice", Expect::Absent)).await.map_err(|x| e("scim_put", x))?;
    ensure!(a.rev == 1, "{a:?}");
    let conflict = |r: Result<ScimRecord, StoreError>| matches!(r, Err(StoreError::Conflict(_)));
    ensure!(conflict(s.scim_put("scim", put("u2", "alice", Expect::Absent)).await), "userName unique, any case");
    ensure!(conflict(s.scim_put("scim", put("u1", "x", Expect::Absent)).await), "id unique");
    ensure!(
        matches!(s.scim_put("scim", put("nope", "x", Expect::Present { rev: None })).await, Err(StoreError::NotFound)),
        "replace of a missing resource"
    );
    ensure!(
        matches!(
            s.scim_put("scim", put("u1", "Alice2", Expect::Present { rev: Some(7) })).await,
            Err(StoreError::Precondition { .. })
        ),
        "If-Match mismatch"
    );
    let b = s
        .scim_put("scim", put("u1", "Alice2", Expect::Present { rev: Some(1) }))
        .await
        .map_err(|x| e("scim_put", x))?;
    ensure!(b.rev == 2 && b.created_at == a.created_at, "{b:?}");
    let find = |index: ScimIndex, v: &'static str| async move { s.scim_find("scim", ScimKind::User, index, v).await };
    ensure!(find(ScimIndex::Name, "ALICE2").await.map_err(|x| e("find", x))?.len() == 1, "name, any case");
    ensure!(find(ScimIndex::Email, "alice2@example.com").await.map_err(|x| e("find", x))?.len() == 1, "email");
    ensure!(find(ScimIndex::Email, "ALICE2.home@example.org").await.map_err(|x| e("find", x))?.len() == 1, "2nd email");
    ensure!(find(ScimIndex::Email, "alice.home@example.org").await.map_err(|x| e("find", x))?.is_empty(), "replaced");
    ensure!(find(ScimIndex::ExternalId, "ext-u1").await.map_err(|x| e("find", x))?.len() == 1, "externalId");
    ensure!(find(ScimIndex::ExternalId, "EXT-U1").await.map_err(|x| e("find", x))?.is_empty(), "externalId exact");
    s.scim_put("other", put("u9", "Alice2", Expect::Absent)).await.map_err(|x| e("another source", x))?;
    let g = ScimWrite {
        kind: ScimKind::Group,
        id: "g1".into(),
        resource: json!({"id": "g1", "displayName": "Eng"}),
        identity: None,
        group: Some(Group {
            external_id: "g1".into(),
            name: "Eng".into(),
            dn: None,
            members: vec![],
            member_groups: vec![],
        }),
        members: Some(MemberChange::Replace(vec![("u1".into(), MemberKind::User)])),
        name: "Eng".into(),
        emails: vec![],
        external_ref: None,
        expect: Expect::Absent,
    };
    s.scim_put("scim", g.clone()).await.map_err(|x| e("group put", x))?;
    let delta = ScimWrite {
        members: Some(MemberChange::Delta { add: vec![("g0".into(), MemberKind::Group)], remove: vec![] }),
        expect: Expect::Present { rev: None },
        ..g.clone()
    };
    // A member that is no resource (deleted since the service resolved it) is refused, and nothing changes.
    ensure!(
        matches!(s.scim_put("scim", delta.clone()).await, Err(StoreError::MissingMember(m)) if m == "g0"),
        "a membership of nobody"
    );
    let rev = s.scim_get("scim", ScimKind::Group, "g1").await.map_err(|x| e("get", x))?.map(|r| r.rev);
    ensure!(rev == Some(1), "the refused write changed the group: {rev:?}");
    let g0 = ScimWrite {
        id: "g0".into(),
        resource: json!({"id": "g0", "displayName": "Root"}),
        name: "Root".into(),
        members: None,
        ..g
    };
    s.scim_put("scim", g0).await.map_err(|x| e("group g0", x))?;
    s.scim_put("scim", delta).await.map_err(|x| e("group delta", x))?;
    let members = s.scim_members("scim", "g1").await.map_err(|x| e("members", x))?;
    ensure!(members.len() == 2, "{members:?}");
    let groups = s.scim_groups_of("scim", "u1").await.map_err(|x| e("groups_of", x))?;
    ensure!(groups == [("g1".to_string(), "Eng".to_string())], "{groups:?}");
    // Kinds of many ids at once (more than one query's worth), unknown ones left out.
    let mut ids: Vec<String> = (0..1200).map(|i| format!("nobody-{i}")).collect();
    ids.extend(["u1".to_string(), "g1".to_string(), "g0".to_string()]);
    let kinds = s.scim_kinds("scim", &ids).await.map_err(|x| e("kinds", x))?;
    ensure!(
        kinds.len() == 3
            && kinds.get("u1") == Some(&MemberKind::User)
            && kinds.get("g1") == Some(&MemberKind::Group)
            && kinds.get("g0") == Some(&MemberKind::Group),
        "{kinds:?}"
    );
    ensure!(s.scim_kinds("other", &ids).await.map_err(|x| e("kinds", x))?.is_empty(), "another source's ids");
    let view = s.last_snapshot("scim").await.map_err(|x| e("view", x))?.ok_or("no SCIM view")?;
    ensure!(view.groups[0].members == ["u1"] && view.groups[0].member_groups == ["g0"], "{view:?}");
    ensure!(view.users[0].user_name == "Alice2", "{view:?}");
    ensure!(s.scim_delete("scim", ScimKind::User, "u1", None).await.map_err(|x| e("delete", x))?, "deleted");
    ensure!(!s.scim_delete("scim", ScimKind::User, "u1", None).await.map_err(|x| e("delete", x))?, "gone");
    ensure!(find(ScimIndex::Email, "alice2.home@example.org").await.map_err(|x| e("find", x))?.is_empty(), "deleted");
    ensure!(s.scim_members("scim", "g1").await.map_err(|x| e("members", x))?.len() == 1, "membership gone");
    ensure!(s.scim_count("scim", ScimKind::Group).await.map_err(|x| e("count", x))? == 2, "two groups");
    let page = s.scim_scan("scim", ScimKind::Group, 0, 10).await.map_err(|x| e("scan", x))?;
    let mut ids: Vec<&str> = page.iter().map(|r| r.id.as_str()).collect();
    ids.sort_unstable();
    ensure!(ids == ["g0", "g1"], "{page:?}");
    concurrent_scim_writes(s).await
}

/// Writes in flight together (the SQLite store commits them in one transaction): each gets its own answer, a
/// refused one takes nothing else down with it, and every accepted one is there afterwards.
async fn concurrent_scim_writes(s: &dyn Store) -> Result<(), String> {
    let before = s.scim_count("batch", ScimKind::User).await.map_err(|x| e("count", x))?;
    // c7 takes the userName of c3: exactly one of the two is refused, whichever commits second.
    let writes = (0..24).map(|i| {
        let name = if i == 7 { "c3".to_string() } else { format!("c{i}") };
        s.scim_put("batch", put(&format!("id{i}"), &name, Expect::Absent))
    });
    let results = futures::future::join_all(writes).await;
    let refused: Vec<usize> = (0..results.len()).filter(|i| results[*i].is_err()).collect();
    ensure!(refused.len() == 1 && (refused[0] == 3 || refused[0] == 7), "{refused:?}: {results:?}");
    ensure!(
        matches!(&results[refused[0]], Err(StoreError::Conflict(_))),
        "the clash is a conflict: {:?}",
        results[refused[0]]
    );
    let after = s.scim_count("batch", ScimKind::User).await.map_err(|x| e("count", x))?;
    ensure!(after == before + 23, "{before} then {after}");
    // Deletes in flight together, one of a resource that does not exist.
    let deletes = (0..6).map(|i| s.scim_delete("batch", ScimKind::User, if i == 5 { "nobody" } else { "id10" }, None));
    let deleted = futures::future::join_all(deletes).await;
    let yes = deleted.iter().filter(|r| matches!(r, Ok(true))).count();
    ensure!(yes == 1 && deleted.iter().all(Result::is_ok), "one real delete: {deleted:?}");
    Ok(())
}
