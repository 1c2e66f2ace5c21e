//! The pure core of the SCIM 2.0 service provider (RFC 7643, RFC 7644): what a User and a Group are
//! ([`schema`], [`discovery`]), what a client may send ([`resource`], [`patch`]), how a query selects
//! ([`filter`]), and the one error table every answer uses ([`error`]).
//!
//! The HTTP side lives in [`service`] (the only module here that does IO: axum handlers over the store); it calls
//! into the rest, which must stay pure.
//!
//! Everything else here is a pure function over `serde_json::Value`s and static schema data: no IO, no async, no
//! axum handlers (only [`error::ScimError`]'s `IntoResponse`), no store, no clock. The HTTP handlers and the
//! storage call in and own everything else; keep it that way, so every client dialect stays testable with
//! plain data.
//!
//! How a handler uses it:
//! - `POST /Users`: [`resource::normalize`] → store assigns id and times → [`resource::stamp`] → store.
//! - `PUT /Users/{id}`: check `If-Match` with [`resource::etag_matches`], [`resource::normalize`], keep `id`,
//!   `meta.created` and `groups` from the stored resource, [`resource::stamp`].
//! - `PATCH`: [`patch::PatchRequest::from_json`], [`patch::apply`] on the stored resource, then
//!   [`resource::stamp`] if [`patch::PatchOutcome::changed`]; `members_added` / `members_removed` say which
//!   users a Group PATCH touched.
//! - `GET /Users?filter=`: [`filter::parse`], [`filter::Filter::as_simple_eq`] for an index lookup, confirm
//!   each candidate with [`filter::Filter::matches`], page with [`resource::page`], shape each with
//!   [`resource::project`], wrap with [`resource::list_response`].
//!
//! We do not use the `scim_v2` crate (1.x): its typed `User`/`Group` cannot hold what PATCH needs to address
//! by path (extension objects, vendor attributes we ignore but must not choke on), it applies no PATCH and
//! evaluates no filter, and its filter grammar cannot express Entra's `emails[type eq "work"].value eq "x"`.
//! What would remain is a parser we would have to convert from and still extend (see [`filter`]).

pub mod auth;
pub mod discovery;
pub mod error;
pub mod filter;
pub mod mapping;
pub mod patch;
pub mod resource;
pub mod schema;
pub mod service;
mod value;

pub use error::{ScimError, ScimType};
