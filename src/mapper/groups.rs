//! Nested groups flattened into per-user memberships, with cycle detection.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use crate::model::Snapshot;

/// Every group (by external id) each user belongs to, directly or through nested groups. Borrows the ids from
/// the snapshot: one short list of references per user, not a set of copied strings.
#[derive(Debug, Default)]
pub struct Memberships<'s> {
    by_user: HashMap<&'s str, Vec<&'s str>>,
    pub warnings: Vec<String>,
}

impl<'s> Memberships<'s> {
    /// The user's groups in id order, borrowed (no copy per user and per call).
    pub fn of_user<'m>(&'m self, external_id: &str) -> impl Iterator<Item = &'s str> + 'm {
        self.by_user.get(external_id).into_iter().flatten().copied()
    }
}

/// Resolves direct memberships (group member lists and the users' own `groups`) and nesting: a member of group
/// B is a member of A when B is listed in A's `member_groups`. Cycles (A ⊃ B ⊃ A) are reported once and do not
/// loop; everyone in a cycle ends up in every group of it, which is what the directory's nesting says.
pub fn flatten_memberships(snap: &Snapshot) -> Memberships<'_> {
    let known: HashSet<&str> = snap.groups.iter().map(|g| g.external_id.as_str()).collect();
    // child group → parent groups
    let mut parents: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for g in &snap.groups {
        for child in &g.member_groups {
            if known.contains(child.as_str()) && *child != g.external_id {
                parents.entry(child.as_str()).or_default().push(g.external_id.as_str());
            }
        }
    }
    // user → the groups that list it directly (duplicates are removed below, with the nesting).
    let mut direct: HashMap<&str, Vec<&str>> = HashMap::new();
    for g in &snap.groups {
        for m in &g.members {
            direct.entry(m.as_str()).or_default().push(g.external_id.as_str());
        }
    }
    for u in &snap.users {
        for gid in &u.groups {
            if known.contains(gid.as_str()) {
                direct.entry(u.external_id.as_str()).or_default().push(gid.as_str());
            }
        }
    }

    // Closure of each group upwards (itself included), memoized per group.
    let mut up: HashMap<&str, Vec<&str>> = HashMap::new();
    for g in &snap.groups {
        let mut seen: BTreeSet<&str> = BTreeSet::new();
        let mut stack = vec![g.external_id.as_str()];
        while let Some(cur) = stack.pop() {
            if seen.insert(cur) {
                stack.extend(parents.get(cur).into_iter().flatten().copied());
            }
        }
        up.insert(g.external_id.as_str(), seen.into_iter().collect());
    }

    let mut out = Memberships { warnings: find_cycles(snap, &parents), by_user: HashMap::new() };
    out.by_user.reserve(snap.users.len());
    for u in &snap.users {
        let Some(gids) = direct.get(u.external_id.as_str()) else { continue };
        let mut all: Vec<&str> = gids.iter().flat_map(|gid| up.get(gid).into_iter().flatten().copied()).collect();
        all.sort_unstable();
        all.dedup();
        if !all.is_empty() {
            out.by_user.insert(u.external_id.as_str(), all);
        }
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
