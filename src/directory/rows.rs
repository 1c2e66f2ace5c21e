//! What both row stores (SQLite, PostgreSQL) share about the directory's rows: the pure parts — a row's hash,
//! a group's body, member kinds, the check of a SCIM write's expectation. No SQL here.

use std::collections::BTreeMap;

use super::{Expect, LedgerWrite, MemberKind, StoreError};
use crate::litellm::types::{TeamRow, UserRow};
use crate::model::Group;

/// 32 hex digits of SHA-256 of a row's JSON: a row whose hash is unchanged is not written again.
pub(super) fn hash(text: &str) -> String {
    hex16(ring::digest::digest(&ring::digest::SHA256, text.as_bytes()).as_ref())
}

/// [`hash`] of `prefix` followed by the JSON of `v`, without building a string of it: the JSON is written into
/// `buf` (reused across rows; serde_json writes in many small pieces, too small to feed the digest one by one).
pub(super) fn hash_json<T: serde::Serialize + ?Sized>(
    buf: &mut Vec<u8>,
    prefix: &[u8],
    v: &T,
) -> Result<String, StoreError> {
    buf.clear();
    buf.extend_from_slice(prefix);
    serde_json::to_writer(&mut *buf, v).map_err(StoreError::query)?;
    Ok(hex16(ring::digest::digest(&ring::digest::SHA256, buf).as_ref()))
}

/// The first 16 bytes of a digest in lower-case hex.
fn hex16(d: &[u8]) -> String {
    crate::model::hex(&d[..d.len().min(16)])
}

pub(super) fn corrupt(what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("{what}: {e}"))
}

pub(super) fn kind_text(k: MemberKind) -> &'static str {
    match k {
        MemberKind::User => "user",
        MemberKind::Group => "group",
    }
}

/// A group's row body: the group without its members (they are rows of their own).
pub(super) fn group_body(g: &Group) -> Result<String, StoreError> {
    // The members are stored as rows of their own: not cloned only to be left out.
    let bare = Group {
        external_id: g.external_id.clone(),
        name: g.name.clone(),
        dn: g.dn.clone(),
        members: Vec::new(),
        member_groups: Vec::new(),
    };
    super::to_json(&bare)
}

/// `(key, JSON)` of each row, for the ledger tables.
pub(super) fn keyed_json<'a, T: serde::Serialize + 'a>(
    rows: impl IntoIterator<Item = (&'a str, &'a T)>,
) -> Result<Vec<(&'a str, String)>, StoreError> {
    rows.into_iter().map(|(k, v)| Ok((k, super::to_json(v)?))).collect()
}

/// What a batch of ledger writes leaves, per table, in key order. Within one transaction only the last write of
/// each row counts, so a row written several times is written once.
pub(super) struct LedgerRows<'a> {
    /// `(user_id, JSON)` to upsert.
    pub users: Vec<(&'a str, String)>,
    /// `user_id`s to delete.
    pub gone: Vec<&'a str>,
    /// `(team_id, JSON)` to upsert.
    pub teams: Vec<(&'a str, String)>,
}

pub(super) fn ledger_rows<'a>(writes: &[&'a LedgerWrite]) -> Result<LedgerRows<'a>, StoreError> {
    let mut users: BTreeMap<&str, Option<&UserRow>> = BTreeMap::new();
    let mut teams: BTreeMap<&str, &TeamRow> = BTreeMap::new();
    for w in writes {
        match w {
            LedgerWrite::PutUser(u) => {
                users.insert(&u.user_id, Some(u));
            }
            LedgerWrite::DeleteUser(id) => {
                users.insert(id, None);
            }
            LedgerWrite::PutTeam(t) => {
                teams.insert(&t.team_id, t);
            }
        }
    }
    let gone = users.iter().filter(|(_, u)| u.is_none()).map(|(id, _)| *id).collect();
    Ok(LedgerRows {
        users: keyed_json(users.into_iter().filter_map(|(id, u)| Some((id, u?))))?,
        gone,
        teams: keyed_json(teams)?,
    })
}

/// Puts the id that an outbox insert's `RETURNING seq, id` gave into its operation's place (RETURNING promises
/// no order).
pub(super) fn place_id(ids: &mut [i64], seq: i64, id: i64) -> Result<(), StoreError> {
    let slot = usize::try_from(seq).ok().and_then(|s| ids.get_mut(s));
    *slot.ok_or_else(|| StoreError::Corrupt(format!("outbox insert returned seq {seq}")))? = id;
    Ok(())
}

/// The member kind stored as text.
pub(super) fn kind_of(text: &str) -> MemberKind {
    if text == "group" {
        MemberKind::Group
    } else {
        MemberKind::User
    }
}

/// A SCIM write's expectation against the stored revision (`None`: no such resource): the revision to write.
pub(super) fn next_rev(expect: Expect, id: &str, current: Option<i64>) -> Result<i64, StoreError> {
    match (expect, current) {
        (Expect::Absent, Some(_)) => Err(StoreError::Conflict(format!("a resource with id {id:?} exists"))),
        (Expect::Absent, None) => Ok(1),
        (Expect::Present { .. }, None) => Err(StoreError::NotFound),
        (Expect::Present { rev: Some(want) }, Some(have)) if want != have => {
            Err(StoreError::Precondition { expected: want.to_string() })
        }
        (Expect::Present { .. }, Some(have)) => Ok(have + 1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_json_is_the_hash_of_prefix_and_json() {
        let v = (vec!["a\"b".to_string(), "é".to_string()], Vec::<String>::new());
        let json = serde_json::to_string(&v).unwrap();
        let mut buf = b"left over".to_vec();
        assert_eq!(hash_json(&mut buf, b"{\"x\":1}", &v).unwrap(), hash(&format!("{{\"x\":1}}{json}")));
        assert_eq!(hash_json(&mut buf, b"", &v).unwrap(), hash(&json));
        assert_eq!(hash("").len(), 32);
        assert_eq!(hash("abc"), "ba7816bf8f01cfea414140de5dae2223");
    }
}
