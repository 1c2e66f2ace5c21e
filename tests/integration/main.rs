//! The integration test binary: the real `litellm-sync` binary against the real LiteLLM proxy that
//! `scripts/test.sh` starts (`LITELLM_SYNC_TEST_LITELLM_URL`, `LITELLM_SYNC_TEST_LITELLM_KEY`), sometimes through a
//! fault-injecting proxy. Without those variables every test fails and says how to run it; none is skipped.
//!
//! Modules follow the acceptance criteria: the user life cycle, scale and paging, ownership, teams, conflicts,
//! the safety limit, LiteLLM faults, bad input, the command line's contract (dry run, exit codes, checks), the
//! directory sources (OpenLDAP, Active Directory) and the daemon.

mod support;

mod ad;
mod bad_input;
mod cli;
mod conflicts;
mod daemon;
mod deploy;
mod explain;
mod faults;
mod ldap;
mod ldap_support;
mod lifecycle;
mod ownership;
mod safety;
mod scale;
mod teams;
