//! litellm-sync: keeps a LiteLLM proxy's users, teams and budgets in step with an identity provider.
//!
//! Layout (see DESIGN.md §5): `sources` turn the outside world into [`model`] snapshots; [`mapper`] applies the
//! rules (pure); [`reconcile::plan`] diffs desired against LiteLLM (pure); [`reconcile::apply`] writes through
//! the [`litellm`] client, whose single write point is where dry-run stops. [`engine`] wires one pass together
//! for the CLI ([`cli`]).

pub mod app;
pub mod cli;
pub mod config;
pub mod directory;
pub mod engine;
pub mod http;
pub mod litellm;
pub mod mapper;
pub mod model;
pub mod reconcile;
pub mod shutdown;
pub mod sources;
pub mod telemetry;
