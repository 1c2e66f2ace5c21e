//! litellm-sync: keeps a LiteLLM proxy's users, teams and budgets in step with an identity provider.
//!
//! The layout follows the data (DESIGN.md §1, §5); each module imports only the ones below it, and nothing
//! imports `app`, `cli` or `daemon` (the test suite checks that the import graph has no cycle). From the bottom:
//! model < config < litellm < mapper < reconcile < directory < telemetry < sources < http < daemon < app, cli.
//!
//! - [`cli`], `main.rs`: parse, load the configuration once, run a command; [`app`]: the daemon's wiring only.
//! - [`daemon`]: the reconciler (one run: plan against the store's ledger, apply through the outbox — also what
//!   `sync` runs), the actor that feeds it the sources' events, leader election, health.
//! - [`http`]: `/metrics`, `/healthz`, `/readyz`, and the SCIM routers merged in; it knows the daemon through a trait.
//! - [`sources`]: LDAP/AD, file, SCIM; each turns the outside world into [`model`] snapshots or change signals and
//!   runs itself with a `SourceContext`. Pure conversion inside (`sources::ldap::convert`, `sources::scim::*`).
//! - [`reconcile`]: `pass` (map → plan against a listing or the ledger; `sources::read_all` reads), `plan/` (pure: users, teams, safety), `apply/` (the only place
//!   that writes to LiteLLM), `op` (the operations), `render` (text and JSON).
//! - [`mapper`]: rules → desired state (pure).
//! - [`directory`]: the `Store` trait and its SQLite and PostgreSQL implementations: the directory's rows, the
//!   ledger, the outbox, SCIM resources.
//! - [`litellm`]: the admin API client (typed calls, error shapes, retries, the single write point).
//! - [`config`]: load (file, environment, overrides) and pure per-section validation; `config::ldap` is the LDAP
//!   attribute map the conversion reads.
//! - [`model`], [`telemetry`], [`shutdown`]: the shared vocabulary (with the ownership marker's key and DN
//!   normalization, `model::dn`), metrics/audit/logs, and the stop signal.

pub mod app;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod directory;
pub mod http;
pub mod litellm;
pub mod mapper;
pub mod model;
pub mod reconcile;
pub mod shutdown;
pub mod sources;
pub mod telemetry;

#[cfg(test)]
mod layers_tests;
