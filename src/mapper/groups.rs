//! Nested groups flattened into per-user memberships, with cycle detection.

use std::collections::{BTreeMap, BTreeSet};

use crate::model::Snapshot;

/// Every group (by external id) each user belongs to, directly or through nested groups.
#[derive(Debug, Default)]
pub struct Memberships {
    by_user: BTreeMap<String, BTreeSet<String>>,
    pub warnings: Vec<String>,
}

impl Memberships {
    pub fn of_user(&self, external_id: &str) -> Vec<String> {
        self.by_user.get(external_id).map(|s| s.iter().cloned().collect()).unwrap_or_default()
    }
}

/// Resolves direct memberships (group member lists and the users' own `groups`) and nesting: a member of group
/// B is a member of A when B is listed in A's `member_groups`. Cycles (A ⊃ B ⊃ A) are reported once and do not
/// loop; everyone in a cycle ends up in every group of it, which is what the directory's nesting says.
pub fn flatten_memberships(snap: &Snapshot) -> Memberships {
    let known: BTreeSet<&str> = snap.groups.iter().map(|g| g.external_id.as_str()).collect();
    // child group → parent groups
    let mut parents: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for g in &snap.groups {
        for child in &g.member_groups {
            if known.contains(child.as_str()) && *child != g.external_id {
                parents.entry(child.as_str()).or_default().push(g.external_id.as_str());
            }
        }
    }
    let mut direct: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for g in &snap.groups {
        for m in &g.members {
            direct.entry(m.as_str()).or_default().insert(g.external_id.as_str());
        }
    }
    for u in &snap.users {
        for gid in &u.groups {
            if known.contains(gid.as_str()) {
                direct.entry(u.external_id.as_str()).or_default().insert(gid.as_str());
            }
        }
    }

    // Closure of each group upwards, memoized per group.
    let mut up: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for g in &snap.groups {
        let mut seen: BTreeSet<&str> = BTreeSet::new();
        let mut stack = vec![g.external_id.as_str()];
        while let Some(cur) = stack.pop() {
            if seen.insert(cur) {
                stack.extend(parents.get(cur).into_iter().flatten().copied());
            }
        }
        up.insert(g.external_id.as_str(), seen);
    }

    let mut out = Memberships { warnings: find_cycles(snap, &parents), ..Default::default() };
    for u in &snap.users {
        let mut all = BTreeSet::new();
        for gid in direct.get(u.external_id.as_str()).into_iter().flatten() {
            all.extend(up.get(gid).into_iter().flatten().map(|s| s.to_string()));
        }
        out.by_user.insert(u.external_id.clone(), all);
    }
    out
}

/// One warning per nesting cycle, naming its groups in order.
fn find_cycles(snap: &Snapshot, parents: &BTreeMap<&str, Vec<&str>>) -> Vec<String> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        Open,
        Done,
    }
    let names: BTreeMap<&str, &str> = snap.groups.iter().map(|g| (g.external_id.as_str(), g.name.as_str())).collect();
    let mut mark: BTreeMap<&str, Mark> = BTreeMap::new();
    let mut warnings = Vec::new();
    for start in names.keys() {
        if mark.contains_key(start) {
            continue;
        }
        // Iterative DFS: (node, index of next parent to visit).
        let mut path: Vec<(&str, usize)> = vec![(start, 0)];
        mark.insert(start, Mark::Open);
        while let Some((node, idx)) = path.last().copied() {
            let next = parents.get(node).and_then(|p| p.get(idx)).copied();
            match next {
                None => {
                    mark.insert(node, Mark::Done);
                    path.pop();
                }
                Some(p) => {
                    if let Some(last) = path.last_mut() {
                        last.1 += 1;
                    }
                    match mark.get(p) {
                        None => {
                            mark.insert(p, Mark::Open);
                            path.push((p, 0));
                        }
                        Some(Mark::Open) => {
                            let pos = path.iter().position(|(n, _)| *n == p).unwrap_or(0);
                            let mut cycle: Vec<&str> = path[pos..].iter().map(|(n, _)| names[n]).collect();
                            cycle.push(names[p]);
                            warnings.push(format!("nested group cycle: {}", cycle.join(" ⊂ ")));
                        }
                        Some(Mark::Done) => {}
                    }
                }
            }
        }
    }
    warnings
}
