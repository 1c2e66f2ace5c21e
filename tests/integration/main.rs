//! The integration test binary: the real `litellm-sync` binary against the real LiteLLM proxy that
//! `scripts/test.sh` starts (`LITELLM_SYNC_TEST_LITELLM_URL`, `LITELLM_SYNC_TEST_LITELLM_KEY`), sometimes through a
//! fault-injecting proxy. Without those variables every test fails and says how to run it; none is skipped.
//! The `oidc` tests need no LiteLLM, only node and `scripts/peers/oidc-provider/install.sh` (a real OpenID provider).
//!
//! Modules follow the acceptance criteria: the user life cycle, scale and paging, ownership, teams, conflicts,
//! the safety limit, LiteLLM faults, bad input, the command line's contract (dry run, exit codes, checks), the
//! directory sources (OpenLDAP, Active Directory), the SCIM source (Okta, Entra ID, conformance) and the daemon.
//! The `scim` tests also need the PyPI conformance testers (`scripts/peers/scim-testers/install.sh`).

mod support;

mod ad;
mod bad_input;
mod cli;
mod conflicts;
mod daemon;
mod deploy;
mod deploy_kit;
mod explain;
mod faults;
mod ha;
mod ldap;
mod lifecycle;
mod oidc;
mod ownership;
mod perf;
mod safety;
mod scale;
mod scim;
mod teams;
