//! Test data shared by the unit tests of several modules.

use super::{Group, Identity, Snapshot};

/// A loopback port with nothing listening (bound, then released): a LiteLLM that never answers.
pub fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// An active person whose id, user name and e-mail derive from `id`.
pub fn person(id: &str) -> Identity {
    Identity {
        external_id: id.into(),
        user_name: id.into(),
        email: Some(format!("{id}@example.com")),
        display_name: None,
        active: true,
        groups: Vec::new(),
        overrides: Default::default(),
    }
}

/// Source `source` with the people `ids`, all in one group named "eng" whose id is `group_id`.
pub fn eng_snapshot(source: &str, group_id: &str, ids: &[&str]) -> Snapshot {
    Snapshot {
        source: source.into(),
        users: ids.iter().map(|i| person(i)).collect(),
        groups: vec![Group {
            external_id: group_id.into(),
            name: "eng".into(),
            dn: None,
            members: ids.iter().map(|i| i.to_string()).collect(),
            member_groups: Vec::new(),
        }],
        unreadable: Vec::new(),
    }
}
