//! Rules → desired LiteLLM state. Pure: identities, groups and the configuration in, desired users and teams
//! out, with the provenance of every field so `explain` can say where it came from.
//!
//! Precedence (README "Mapping rules"): a per-user override beats every rule; rules beat `[defaults]`, which fill
//! only the fields no matching rule sets. Among rules: role = most privileged; models = union ("all-proxy-models"
//! wins); metadata = first rule (file order) per key; budgets and limits per `[precedence] limits`
//! (highest/lowest/first); `budget_duration` comes with the winning `max_budget` when that rule sets one.

mod groups;
mod templates;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet, HashMap};

use globset::{GlobBuilder, GlobMatcher};
use serde::{Deserialize, Serialize};

use crate::config::{Config, KeySpec, LimitPrecedence, Rule, Unmatched};
use crate::model::dn::normalize_dn;
use crate::model::{Grants, Group, Identity, Role, Snapshot, TeamRole};

pub use groups::{flatten_memberships, Memberships};
use templates::render_group_template;
pub use templates::{normalize_email, render_user_id, slugify};

/// LiteLLM's value for "every model on the proxy".
pub const ALL_MODELS: &str = "all-proxy-models";

/// Identifies a person across runs: the source that owns it and the source's immutable id.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ExternalKey {
    pub source: String,
    pub external_id: String,
}

impl std::fmt::Display for ExternalKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.source, self.external_id)
    }
}

/// Options that only matter when the user is created.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CreateOptions {
    pub key: Option<KeySpec>,
    pub send_invite_email: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DesiredUser {
    pub key: ExternalKey,
    /// The id a new LiteLLM user gets; an existing managed user keeps the id it has.
    pub user_id: String,
    pub user_name: String,
    pub email: Option<String>,
    pub alias: Option<String>,
    /// False when the source reports the account disabled: the user is deprovisioned.
    pub active: bool,
    pub fields: Grants,
    pub create: CreateOptions,
    /// Field name → where its value came from ("rule admins (group cn=admins,…)", "defaults", "override").
    pub provenance: Provenance,
    /// Every group the user is in, nesting resolved (names).
    pub groups: Vec<String>,
    pub rules: Vec<String>,
}

/// Field name → where its value came from, as a short list sorted by field name. It reads, serializes and
/// deserializes like the map it replaces; most users have one to three entries, for which a map's node would
/// cost about half a KiB each, and a run holds every user's at once.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Provenance(Vec<(String, String)>);

impl Provenance {
    fn position(&self, field: &str) -> Result<usize, usize> {
        self.0.binary_search_by(|(k, _)| k.as_str().cmp(field))
    }

    pub fn get(&self, field: &str) -> Option<&String> {
        self.position(field).ok().map(|i| &self.0[i].1)
    }

    /// Sets where `field` came from, replacing what was recorded for it.
    pub fn insert(&mut self, field: String, from: String) {
        match self.position(&field) {
            Ok(i) => self.0[i].1 = from,
            Err(i) => self.0.insert(i, (field, from)),
        }
    }

    /// The entries in field order.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &String)> {
        self.0.iter().map(|(k, v)| (k, v))
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl Serialize for Provenance {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.iter())
    }
}

impl<'de> Deserialize<'de> for Provenance {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Provenance(BTreeMap::<String, String>::deserialize(d)?.into_iter().collect()))
    }
}

/// A group that feeds a team.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TeamOwner {
    pub source: String,
    pub group_id: String,
    pub group_name: String,
    /// The rule's team id is rendered from the group (`{group_name}`, `{group_id}`) rather than written out: two
    /// such groups meeting on one id is an accident of rendering, while a written-out id names its team on purpose.
    #[serde(skip)]
    pub templated: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DesiredTeam {
    pub team_id: String,
    pub alias: String,
    /// The first group (in source and rule order) that renders the team: its settings and the marker's owner.
    pub source: String,
    pub group_id: String,
    /// Every group that feeds the team: one, or groups of the same name in several sources (merged ownership).
    pub owners: Vec<TeamOwner>,
    /// Users the owning groups hold as read, active or not, nesting resolved. Zero while the team has managed
    /// members means the group read empty: doubt, not a reason to remove anyone.
    pub source_members: usize,
    pub rule: String,
    pub max_budget: Option<f64>,
    pub soft_budget: Option<f64>,
    pub budget_duration: Option<String>,
    pub models: Option<Vec<String>>,
    pub tpm_limit: Option<u64>,
    pub rpm_limit: Option<u64>,
    pub metadata: BTreeMap<String, serde_json::Value>,
    pub members: BTreeMap<ExternalKey, TeamRole>,
}

/// An identity that produced no desired user, and why (shown by `plan` and `explain`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Excluded {
    pub key: ExternalKey,
    pub user_name: String,
    pub reason: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct DesiredState {
    /// Every identity in scope, keyed by the source's id. Two of them may render one `user_id`: the planner,
    /// which knows who owns the id in LiteLLM, decides (DESIGN.md §2.6).
    pub users: BTreeMap<ExternalKey, DesiredUser>,
    pub teams: BTreeMap<String, DesiredTeam>,
    /// Team ids that two distinct groups render: a configuration error; neither group's team is planned.
    pub team_conflicts: BTreeSet<String>,
    pub excluded: Vec<Excluded>,
    pub warnings: Vec<String>,
    /// Problems that must fail the run (team id conflicts).
    pub errors: Vec<String>,
}

struct CompiledRule<'a> {
    rule: &'a Rule,
    globs: Option<GlobMatcher>,
    exact: Vec<String>,
}

impl CompiledRule<'_> {
    fn matches(&self, source: &str, g: &Group) -> bool {
        if self.rule.matcher.source.as_deref().is_some_and(|s| s != source) {
            return false;
        }
        let dn = g.dn.as_deref().map(normalize_dn);
        let exact = self
            .exact
            .iter()
            .any(|m| *m == g.external_id || *m == g.name || dn.as_deref().is_some_and(|d| *d == normalize_dn(m)));
        exact
            || self
                .globs
                .as_ref()
                .is_some_and(|gl| gl.is_match(&g.name) || g.dn.as_deref().is_some_and(|d| gl.is_match(d)))
    }
}

/// The mapper: built once per configuration, applied to any number of snapshots.
pub struct Mapper<'a> {
    cfg: &'a Config,
    rules: Vec<CompiledRule<'a>>,
}

impl<'a> Mapper<'a> {
    pub fn new(cfg: &'a Config) -> Self {
        let rules = cfg
            .rules
            .iter()
            .map(|rule| CompiledRule {
                rule,
                // Validation already rejected bad globs; a glob that fails here simply matches nothing.
                globs: rule
                    .matcher
                    .group_glob
                    .as_deref()
                    .and_then(|g| GlobBuilder::new(g).case_insensitive(true).literal_separator(false).build().ok())
                    .map(|g| g.compile_matcher()),
                exact: rule.matcher.groups.clone(),
            })
            .collect();
        Mapper { cfg, rules }
    }

    /// Maps complete snapshots to the desired state. The order matters only for teams several sources feed: the
    /// first source's group owns the team.
    pub fn map<'s>(&self, snapshots: impl IntoIterator<Item = &'s Snapshot>) -> DesiredState {
        let mut out = DesiredState::default();
        for snap in snapshots {
            let Some(src) = self.cfg.source(&snap.source) else {
                out.warnings.push(format!("snapshot from unknown source {:?} ignored", snap.source));
                continue;
            };
            let memberships = flatten_memberships(snap);
            out.warnings.extend(memberships.warnings.iter().cloned());
            let groups_by_id: HashMap<&str, &Group> = snap.groups.iter().map(|g| (g.external_id.as_str(), g)).collect();
            // Which rules each group matches, computed once per group.
            let matched_rules: HashMap<&str, Vec<usize>> = snap
                .groups
                .iter()
                .map(|g| {
                    let idx = self.rules.iter().enumerate().filter(|(_, r)| r.matches(&snap.source, g)).map(|(i, _)| i);
                    (g.external_id.as_str(), idx.collect())
                })
                .collect();

            let mut users: Vec<(ExternalKey, DesiredUser)> = Vec::with_capacity(snap.users.len());
            for ident in &snap.users {
                let key = ExternalKey { source: snap.source.clone(), external_id: ident.external_id.clone() };
                let user_groups: Vec<&Group> =
                    memberships.of_user(&ident.external_id).filter_map(|gid| groups_by_id.get(gid).copied()).collect();
                // (rule index, group) pairs in rule order, then group order.
                let mut hits: Vec<(usize, &Group)> = user_groups
                    .iter()
                    .flat_map(|g| {
                        matched_rules.get(g.external_id.as_str()).into_iter().flatten().map(move |&i| (i, *g))
                    })
                    .collect();
                hits.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.name.cmp(&b.1.name)));

                if hits.is_empty() && self.cfg.scope.unmatched_users == Unmatched::Exclude {
                    out.excluded.push(Excluded {
                        key,
                        user_name: ident.user_name.clone(),
                        reason: "matches no rule and scope.unmatched_users = \"exclude\"".into(),
                    });
                    continue;
                }
                let user_id = match render_user_id(src, ident) {
                    Ok(id) => id,
                    Err(reason) => {
                        out.excluded.push(Excluded { key, user_name: ident.user_name.clone(), reason });
                        continue;
                    }
                };

                let (fields, provenance) = self.resolve(ident, &hits);
                let mut rules: Vec<String> = hits.iter().map(|(i, _)| self.rules[*i].rule.name.clone()).collect();
                rules.dedup();
                let create = self.create_options(&hits);
                let mut group_names: Vec<String> = user_groups.iter().map(|g| g.name.clone()).collect();
                group_names.sort();
                if ident.active {
                    for (i, g) in &hits {
                        if let Some(team) = &self.rules[*i].rule.team {
                            self.add_team_member(&mut out, &snap.source, self.rules[*i].rule, team, g, &key);
                        }
                    }
                }
                users.push((
                    key.clone(),
                    DesiredUser {
                        key,
                        user_id,
                        user_name: ident.user_name.clone(),
                        email: ident.email.as_deref().map(normalize_email).filter(|e| !e.is_empty()),
                        alias: ident.display_name.clone().filter(|d| !d.trim().is_empty()),
                        active: ident.active,
                        fields,
                        create,
                        provenance,
                        groups: group_names,
                        rules,
                    },
                ));
            }
            if out.users.is_empty() {
                out.users = into_sorted_map(users);
            } else {
                out.users.extend(users);
            }
            // Teams whose group currently has no active member still exist as desired (empty roster), and every
            // team learns how many users its groups hold as read.
            let mut group_sizes: HashMap<&str, usize> = HashMap::new();
            for u in &snap.users {
                for gid in memberships.of_user(&u.external_id) {
                    if let Some(g) = groups_by_id.get(gid) {
                        *group_sizes.entry(g.external_id.as_str()).or_default() += 1;
                    }
                }
            }
            for g in &snap.groups {
                let mut counted = BTreeSet::new();
                for &i in matched_rules.get(g.external_id.as_str()).into_iter().flatten() {
                    if let Some(team) = &self.rules[i].rule.team {
                        let t = self.ensure_team(&mut out, &snap.source, self.rules[i].rule, team, g);
                        // Several rules may render one team from the same group: count the group once.
                        if counted.insert(t.team_id.clone()) {
                            t.source_members += group_sizes.get(g.external_id.as_str()).copied().unwrap_or(0);
                        }
                    }
                }
            }
        }
        for team_id in &out.team_conflicts {
            out.teams.remove(team_id);
        }
        out
    }

    fn create_options(&self, hits: &[(usize, &Group)]) -> CreateOptions {
        let mut opts = CreateOptions::default();
        for (i, _) in hits {
            let r = self.rules[*i].rule;
            if opts.key.is_none() {
                opts.key = r.key.clone();
            }
            opts.send_invite_email |= r.send_invite_email;
        }
        opts
    }

    fn ensure_team<'b>(
        &self,
        out: &'b mut DesiredState,
        source: &str,
        rule: &Rule,
        spec: &crate::config::TeamSpec,
        g: &Group,
    ) -> &'b mut DesiredTeam {
        let team_id = render_group_template(spec.id.as_deref().unwrap_or("{group_name}"), source, g, true);
        let alias = render_group_template(spec.alias.as_deref().unwrap_or("{group_name}"), source, g, false);
        let template = spec.id.as_deref().unwrap_or("{group_name}");
        let owner = TeamOwner {
            source: source.to_string(),
            group_id: g.external_id.clone(),
            group_name: g.name.clone(),
            templated: template.contains("{group_name}") || template.contains("{group_id}"),
        };
        if let Some(existing) = out.teams.get_mut(&team_id) {
            if !existing.owners.iter().any(|o| o.source == owner.source && o.group_id == owner.group_id) {
                // Merged on purpose: a team id written out in a rule (several groups feed that team), or groups of
                // one name in several sources. Any other pair of distinct groups rendering one id (two names that
                // slugify alike) would merge two audiences' access: a configuration error, never silently.
                let merge = !owner.templated
                    || existing
                        .owners
                        .iter()
                        .all(|o| !o.templated || (o.source != owner.source && o.group_name == owner.group_name));
                if merge {
                    existing.owners.push(owner.clone());
                } else {
                    let first = &existing.owners[0];
                    let error = format!(
                        "team id {team_id:?} is rendered by two distinct groups, {:?} ({}, id {:?}) and {:?} ({}, id \
                         {:?}); neither team is provisioned. Make the team rule's `id` template tell them apart (e.g. \
                         with {{group_id}})",
                        first.group_name, first.source, first.group_id, owner.group_name, owner.source, owner.group_id
                    );
                    if out.team_conflicts.insert(team_id.clone()) || !out.errors.contains(&error) {
                        out.errors.push(error);
                    }
                }
            }
        }
        out.teams.entry(team_id.clone()).or_insert_with(|| DesiredTeam {
            team_id,
            alias,
            source: source.to_string(),
            group_id: g.external_id.clone(),
            owners: vec![owner],
            source_members: 0,
            rule: rule.name.clone(),
            max_budget: spec.max_budget,
            soft_budget: spec.soft_budget,
            budget_duration: spec.budget_duration.clone(),
            models: spec.models.as_ref().map(|m| normalize_models(m.iter().cloned())),
            tpm_limit: spec.tpm_limit,
            rpm_limit: spec.rpm_limit,
            metadata: spec.metadata.clone(),
            members: BTreeMap::new(),
        })
    }

    fn add_team_member(
        &self,
        out: &mut DesiredState,
        source: &str,
        rule: &Rule,
        spec: &crate::config::TeamSpec,
        g: &Group,
        key: &ExternalKey,
    ) {
        let team = self.ensure_team(out, source, rule, spec, g);
        let role = team.members.entry(key.clone()).or_insert(spec.member_role);
        *role = (*role).max(spec.member_role);
    }

    /// Combines defaults, matching rules and the user's overrides into the desired user fields.
    fn resolve(&self, ident: &Identity, hits: &[(usize, &Group)]) -> (Grants, Provenance) {
        let mut g = Grants::default();
        let mut prov = Provenance::default();
        let origin = |i: usize, grp: &Group| {
            format!("rule {:?} (group {:?})", self.rules[i].rule.name, grp.dn.as_deref().unwrap_or(&grp.name))
        };
        let prec = self.cfg.precedence.limits;

        // role: most privileged.
        if let Some((r, i, grp)) = hits
            .iter()
            .filter_map(|(i, grp)| self.rules[*i].rule.grants.role.map(|r| (r, *i, *grp)))
            .fold(None, |best: Option<(Role, usize, &Group)>, cur| match best {
                Some(b) if b.0 >= cur.0 => Some(b),
                _ => Some(cur),
            })
        {
            g.role = Some(r);
            prov.insert("role".into(), origin(i, grp));
        }

        // Numeric limits by precedence.
        macro_rules! pick {
            ($field:ident) => {{
                let cands = hits.iter().filter_map(|(i, grp)| self.rules[*i].rule.grants.$field.map(|v| (v, *i, *grp)));
                if let Some((v, i, grp)) = choose(cands, prec) {
                    g.$field = Some(v);
                    prov.insert(stringify!($field).into(), origin(i, grp));
                    Some(i)
                } else {
                    None
                }
            }};
        }
        let budget_rule = pick!(max_budget);
        pick!(tpm_limit);
        pick!(rpm_limit);
        pick!(max_parallel_requests);

        // budget_duration travels with the winning max_budget when that rule sets one.
        let dur = budget_rule
            .and_then(|bi| {
                hits.iter()
                    .find(|(i, _)| *i == bi)
                    .and_then(|(i, grp)| self.rules[*i].rule.grants.budget_duration.clone().map(|d| (d, *i, *grp)))
            })
            .or_else(|| {
                hits.iter()
                    .find_map(|(i, grp)| self.rules[*i].rule.grants.budget_duration.clone().map(|d| (d, *i, *grp)))
            });
        if let Some((d, i, grp)) = dur {
            g.budget_duration = Some(d);
            prov.insert("budget_duration".into(), origin(i, grp));
        }

        // models: union; "all-proxy-models" wins.
        let mut model_origins = Vec::new();
        let mut models: BTreeSet<String> = BTreeSet::new();
        for (i, grp) in hits {
            if let Some(ms) = &self.rules[*i].rule.grants.models {
                models.extend(ms.iter().cloned());
                model_origins.push(origin(*i, grp));
            }
        }
        if !model_origins.is_empty() {
            g.models = Some(normalize_models(models.into_iter()));
            model_origins.dedup();
            prov.insert("models".into(), model_origins.join(" + "));
        }

        // model_max_budget: per model, by precedence.
        let mut mmb: BTreeMap<String, (f64, usize, &Group)> = BTreeMap::new();
        for (i, grp) in hits {
            for (model, v) in self.rules[*i].rule.grants.model_max_budget.iter().flatten() {
                let cur = (*v, *i, *grp);
                let keep = match mmb.get(model) {
                    None => true,
                    Some(best) => match prec {
                        LimitPrecedence::Highest => cur.0 > best.0,
                        LimitPrecedence::Lowest => cur.0 < best.0,
                        LimitPrecedence::First => false,
                    },
                };
                if keep {
                    mmb.insert(model.clone(), cur);
                }
            }
        }
        if !mmb.is_empty() {
            let mut origins: Vec<String> = mmb.values().map(|(_, i, grp)| origin(*i, grp)).collect();
            origins.sort();
            origins.dedup();
            prov.insert("model_max_budget".into(), origins.join(" + "));
            g.model_max_budget = Some(mmb.into_iter().map(|(k, (v, _, _))| (k, v)).collect());
        }

        // metadata: first rule per key.
        for (i, grp) in hits {
            for (k, v) in &self.rules[*i].rule.grants.metadata {
                if !g.metadata.contains_key(k) {
                    g.metadata.insert(k.clone(), v.clone());
                    prov.insert(format!("metadata.{k}"), origin(*i, grp));
                }
            }
        }

        // Defaults fill what no rule set.
        overlay(&mut g, &mut prov, &self.cfg.defaults, "defaults", false);
        // Per-user overrides beat everything.
        overlay(&mut g, &mut prov, &ident.overrides, "per-user override", true);
        (g, prov)
    }
}

/// The map of `users` built at once in key order: inserting them one by one in read order shifts the (large)
/// values around inside the tree's nodes for every user. A key read twice keeps its last entry, as inserting did.
fn into_sorted_map(mut users: Vec<(ExternalKey, DesiredUser)>) -> BTreeMap<ExternalKey, DesiredUser> {
    // Sort positions, not the values themselves, then move each value once into place (following the cycles of
    // the permutation): position i receives the value at order[i]. Equal keys keep read order (stable sort).
    let mut order = key_order(users.iter().map(|(k, _)| k));
    for start in 0..order.len() {
        let mut cur = start;
        loop {
            let next = order[cur];
            order[cur] = cur;
            if next == start || next == cur {
                break;
            }
            users.swap(cur, next);
            cur = next;
        }
    }
    users.dedup_by(|later, kept| {
        let same = later.0 == kept.0;
        if same {
            std::mem::swap(later, kept);
        }
        same
    });
    // Already sorted and unique: the map is built from the vector without sorting or moving anything again.
    users.into_iter().collect()
}

/// The positions of `keys` in key order, equal keys in their given order. Comparing two keys reads two strings
/// elsewhere in memory; the first bytes of the external ids are compared inline first (keys of one source, as a
/// snapshot's are, differ there), so sorting ~every user of a run costs few of those reads.
pub(crate) fn key_order<'k>(keys: impl Iterator<Item = &'k ExternalKey>) -> Vec<usize> {
    let keys: Vec<&ExternalKey> = keys.collect();
    let one_source = keys.first().is_none_or(|f| keys.iter().all(|k| k.source == f.source));
    let mut order: Vec<(u64, usize)> = keys
        .iter()
        .enumerate()
        .map(|(i, k)| {
            let mut head = [0u8; 8];
            if one_source {
                let b = k.external_id.as_bytes();
                let n = b.len().min(8);
                head[..n].copy_from_slice(&b[..n]);
            }
            // Big-endian, zero-padded: ordered as the strings are (a tie falls back to the full comparison).
            (u64::from_be_bytes(head), i)
        })
        .collect();
    order.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| keys[a.1].cmp(keys[b.1])).then(a.1.cmp(&b.1)));
    order.into_iter().map(|(_, i)| i).collect()
}

/// Picks one candidate value by precedence; candidates arrive in rule order.
fn choose<T: PartialOrd + Copy, X: Copy>(
    cands: impl Iterator<Item = (T, usize, X)>,
    prec: LimitPrecedence,
) -> Option<(T, usize, X)> {
    cands.fold(None, |best, cur| match best {
        None => Some(cur),
        Some(b) => Some(match prec {
            LimitPrecedence::Highest if cur.0 > b.0 => cur,
            LimitPrecedence::Lowest if cur.0 < b.0 => cur,
            _ => b,
        }),
    })
}

/// Copies the fields of `layer` into `g`: all of them when `force`, else only those `g` does not set.
fn overlay(g: &mut Grants, prov: &mut Provenance, layer: &Grants, label: &str, force: bool) {
    macro_rules! put {
        ($field:ident, $name:expr) => {
            if let Some(v) = &layer.$field {
                if force || g.$field.is_none() {
                    g.$field = Some(v.clone());
                    prov.insert($name.into(), label.into());
                }
            }
        };
    }
    put!(role, "role");
    put!(max_budget, "max_budget");
    put!(budget_duration, "budget_duration");
    put!(tpm_limit, "tpm_limit");
    put!(rpm_limit, "rpm_limit");
    put!(max_parallel_requests, "max_parallel_requests");
    put!(model_max_budget, "model_max_budget");
    if let Some(m) = &layer.models {
        if force || g.models.is_none() {
            g.models = Some(normalize_models(m.iter().cloned()));
            prov.insert("models".into(), label.into());
        }
    }
    for (k, v) in &layer.metadata {
        if force || !g.metadata.contains_key(k) {
            g.metadata.insert(k.clone(), v.clone());
            prov.insert(format!("metadata.{k}"), label.into());
        }
    }
}

/// Sorted, de-duplicated; any "all-proxy-models" collapses the list to just that.
pub fn normalize_models(models: impl Iterator<Item = String>) -> Vec<String> {
    let set: BTreeSet<String> = models.map(|m| m.trim().to_string()).filter(|m| !m.is_empty()).collect();
    if set.contains(ALL_MODELS) {
        vec![ALL_MODELS.to_string()]
    } else {
        set.into_iter().collect()
    }
}
