//! `type = "ldap"`: OpenLDAP and Active Directory. Paged (RFC 2696) streaming searches over failover servers,
//! StartTLS or LDAPS, and the pure conversion in [`convert`].
//!
//! A read is all or nothing: a bind failure, a timeout, a dropped connection, a referral, or a size limit fails
//! it, so that an incomplete directory view can never look like users who left.

pub mod convert;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use ldap3::adapters::{Adapter, PagedResults};
use ldap3::{Ldap, LdapConnAsync, LdapConnSettings, Scope};
use secrecy::ExposeSecret;
use tracing::Instrument;

use self::convert::{group_from_entry, resolve, user_from_entry, GroupRecord, RawEntry, UserRecord};
use super::SourceError;
use crate::config::{LdapScope, LdapSourceConfig};
use crate::model::{EntryKind, Snapshot, Unreadable};

pub struct LdapSource {
    name: String,
    cfg: LdapSourceConfig,
}

/// Counts of what a read saw, logged and used by `check-config`.
#[derive(Debug, Default, Clone)]
pub struct ReadStats {
    pub server: String,
    pub users: usize,
    pub groups: usize,
    pub disabled: usize,
    /// Entries seen but not converted (`Snapshot::unreadable`).
    pub skipped_entries: usize,
    pub foreign_members: usize,
}

impl LdapSource {
    pub fn new(name: &str, cfg: &LdapSourceConfig) -> LdapSource {
        LdapSource { name: name.to_string(), cfg: cfg.clone() }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    fn err(&self, message: impl Into<String>) -> SourceError {
        SourceError::Ldap { source_name: self.name.clone(), message: message.into() }
    }

    pub async fn snapshot(&self) -> Result<Snapshot, SourceError> {
        self.snapshot_with_stats().await.map(|(s, _)| s)
    }

    /// Reads the directory on a thread of its own, with a single-threaded runtime: ldap3's connection task and
    /// the conversion of its entries then take turns on one thread, instead of waking each other across the
    /// caller's worker threads for every batch of entries. At 100,000 users that cuts the client's CPU time by a
    /// third (`cargo bench --bench ldap_read`, `LDAP_BENCH_RUNTIME`) and leaves the other core to the server.
    /// Dropping the returned future cancels the read (its connection is dropped), as on the caller's runtime.
    pub async fn snapshot_with_stats(&self) -> Result<(Snapshot, ReadStats), SourceError> {
        let reader = LdapSource::new(&self.name, &self.cfg);
        let span = tracing::Span::current();
        let (cancel_on_drop, cancelled) = tokio::sync::oneshot::channel::<()>();
        let thread = tokio::task::spawn_blocking(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| reader.err(format!("cannot start the directory reader: {e}")))?;
            let read = async {
                tokio::select! {
                    r = tokio::time::timeout(reader.cfg.read_timeout, reader.read()) => r.unwrap_or_else(|_| {
                        Err(reader.err(format!(
                            "the directory read did not finish within read_timeout ({}); nothing is deprovisioned",
                            humantime::format_duration(reader.cfg.read_timeout)
                        )))
                    }),
                    _ = cancelled => Err(reader.err("the directory read was cancelled")),
                }
            };
            rt.block_on(read.instrument(span))
        });
        let result = thread.await.unwrap_or_else(|e| Err(self.err(format!("the directory reader failed: {e}"))));
        drop(cancel_on_drop);
        result
    }

    /// Binds and reads one user entry: proves the URL, TLS, credentials, base and filter.
    pub async fn check(&self) -> Result<String, SourceError> {
        let (mut ldap, url) = self.connect().await?;
        let attrs = vec![self.cfg.attributes.user_name.clone()];
        ldap.with_timeout(self.cfg.operation_timeout);
        // A one-entry search: "size limit exceeded" (4) after the first entry is the expected answer.
        let res = ldap
            .with_search_options(ldap3::SearchOptions::new().sizelimit(1))
            .search(&self.cfg.user_base, scope_of(self.cfg.user_scope), &self.cfg.user_filter, attrs)
            .await
            .map_err(|e| self.err(format!("user search failed: {e}")))?;
        let _ = ldap.unbind().await;
        if res.1.rc != 0 && res.1.rc != 4 {
            return Err(self.err(format!(
                "user search of {:?} ended with result code {}: {}",
                self.cfg.user_base, res.1.rc, res.1.text
            )));
        }
        let first = res.0.into_iter().find(|e| !e.is_ref()).and_then(|e| RawEntry::from_ber(e.0));
        Ok(match first {
            Some(e) => {
                format!("bound to {url} as {:?}; the user search finds entries, e.g. {:?}", self.cfg.bind_dn, e.dn)
            }
            None => {
                return Err(self.err(format!(
                    "bound to {url} as {:?}, but the user search (base {:?}, filter {}) finds no entries: a sync would \
                     refuse to use this source",
                    self.cfg.bind_dn, self.cfg.user_base, self.cfg.user_filter
                )))
            }
        })
    }

    fn settings(&self) -> Result<LdapConnSettings, SourceError> {
        let mut s = LdapConnSettings::new().set_conn_timeout(self.cfg.connect_timeout).set_starttls(self.cfg.starttls);
        if self.cfg.insecure_skip_verify {
            s = s.set_no_tls_verify(true);
        } else if let Some(ca) = &self.cfg.ca_file {
            s = s.set_config(Arc::new(tls_config(ca).map_err(|m| self.err(m))?));
        }
        Ok(s)
    }

    /// Connects to the first server that answers, and binds. A rejected bind is final (the same credentials
    /// would fail on every server); connection failures move on to the next URL.
    async fn connect(&self) -> Result<(Ldap, String), SourceError> {
        let mut failures = Vec::new();
        for url in &self.cfg.urls {
            let shown = url.as_str().to_string();
            let conn = tokio::time::timeout(
                self.cfg.connect_timeout + Duration::from_secs(1),
                LdapConnAsync::with_settings(self.settings()?, url.as_str()),
            )
            .await;
            let (conn, mut ldap) = match conn {
                Ok(Ok(pair)) => pair,
                Ok(Err(e)) => {
                    tracing::warn!(source = %self.name, server = %shown, error = %e, "LDAP server unreachable, trying the next one");
                    failures.push(format!("{shown}: {e}"));
                    continue;
                }
                Err(_) => {
                    failures.push(format!("{shown}: no connection within {:?}", self.cfg.connect_timeout));
                    continue;
                }
            };
            ldap3::drive!(conn);
            let password = self.cfg.bind_password.resolve("bind_password").map_err(|e| self.err(e.to_string()))?;
            ldap.with_timeout(self.cfg.operation_timeout);
            match ldap.simple_bind(&self.cfg.bind_dn, password.expose_secret()).await {
                Ok(res) if res.rc == 0 => return Ok((ldap, shown)),
                Ok(res) => {
                    return Err(self.err(format!(
                        "bind as {:?} to {shown} was refused: {} (result code {}){}",
                        self.cfg.bind_dn,
                        if res.text.is_empty() { "no reason given" } else { res.text.as_str() },
                        res.rc,
                        if res.rc == 49 { "; check bind_dn and the password" } else { "" }
                    )))
                }
                Err(e) => {
                    tracing::warn!(source = %self.name, server = %shown, error = %e, "LDAP bind failed, trying the next server");
                    failures.push(format!("{shown}: {e}"));
                }
            }
        }
        Err(self.err(format!("no LDAP server could be used: {}", failures.join("; "))))
    }

    /// One paged search, streamed: `each` sees every entry as it arrives; nothing else is kept. Returns what was
    /// read, with the entries the server sent malformed (which `each` never sees). Referrals, size limits and any
    /// non-success result fail the search.
    async fn search(
        &self,
        ldap: &mut Ldap,
        base: &str,
        scope: LdapScope,
        filter: &str,
        attrs: Vec<String>,
        mut each: impl FnMut(RawEntry),
    ) -> Result<Searched, SourceError> {
        let scope = scope_of(scope);
        let page = i32::try_from(self.cfg.page_size).unwrap_or(i32::MAX);
        let adapters: Vec<Box<dyn Adapter<_, _>>> = vec![Box::new(PagedResults::new(page))];
        ldap.with_timeout(self.cfg.operation_timeout);
        let what = format!("search of {base:?} with {filter}");
        let mut stream = ldap
            .streaming_search_with(adapters, base, scope, filter, attrs)
            .await
            .map_err(|e| self.err(format!("{what} failed: {e}")))?;
        let mut n = 0usize;
        let mut malformed = 0usize;
        let mut referrals = 0usize;
        loop {
            let next = stream.next().await.map_err(|e| self.err(format!("{what} failed after {n} entries: {e}")))?;
            let Some(entry) = next else { break };
            if entry.is_ref() {
                referrals += 1;
                continue;
            }
            if entry.is_intermediate() {
                continue;
            }
            match RawEntry::from_ber(entry.0) {
                Some(e) => each(e),
                None => malformed += 1,
            }
            n += 1;
        }
        let res = stream.finish().await;
        match res.rc {
            0 => {}
            4 => {
                return Err(self.err(format!(
                    "{what} hit the server's size limit after {n} entries: allow paged results beyond the limit for \
                     the bind DN (OpenLDAP: limits ... size.prtotal=unlimited)"
                )))
            }
            10 => return Err(self.err(format!("{what} returned a referral to {:?}, which is not followed", res.refs))),
            rc => {
                return Err(self.err(format!(
                    "{what} ended with result code {rc}: {}",
                    if res.text.is_empty() { "no reason given" } else { res.text.as_str() }
                )))
            }
        }
        if referrals > 0 && !self.cfg.ignore_referrals {
            return Err(self.err(format!(
                "{what} returned {referrals} referral(s) to other servers, which are not followed: narrow the base DN \
                 or set ignore_referrals = true if those subtrees hold no users"
            )));
        }
        Ok(Searched { what, malformed })
    }

    async fn read(&self) -> Result<(Snapshot, ReadStats), SourceError> {
        let (mut ldap, server) = self.connect().await?;
        let map = &self.cfg.attributes;
        let mut stats = ReadStats { server, ..Default::default() };

        let mut users: Vec<UserRecord> = Vec::new();
        let mut unreadable: Vec<Unreadable> = Vec::new();
        let searched = self
            .search(&mut ldap, &self.cfg.user_base, self.cfg.user_scope, &self.cfg.user_filter, map.user_attrs(), |e| {
                match user_from_entry(&e, map) {
                    Ok(u) => users.push(u),
                    Err(u) => unreadable.push(u),
                }
            })
            .await?;
        searched.report_malformed(EntryKind::User, &mut unreadable);

        if let Some(df) = &self.cfg.disabled_filter {
            let mut disabled: BTreeSet<String> = BTreeSet::new();
            let filter = format!("(&{}{})", self.cfg.user_filter, df);
            let searched = self
                .search(&mut ldap, &self.cfg.user_base, self.cfg.user_scope, &filter, vec!["1.1".into()], |e| {
                    disabled.insert(convert::normalize_dn(&e.dn));
                })
                .await?;
            // A disabled user the server sent malformed: whoever it is may still look active.
            searched.report_malformed(EntryKind::User, &mut unreadable);
            for u in &mut users {
                if disabled.contains(&u.dn_norm) {
                    u.identity.active = false;
                }
            }
        }

        let mut groups: Vec<GroupRecord> = Vec::new();
        let searched = self
            .search(
                &mut ldap,
                &self.cfg.group_base,
                self.cfg.group_scope,
                &self.cfg.group_filter,
                map.group_attrs(),
                |e| match group_from_entry(&e, map) {
                    Ok(g) => groups.push(g),
                    Err(u) => unreadable.push(u),
                },
            )
            .await?;
        searched.report_malformed(EntryKind::Group, &mut unreadable);

        if self.cfg.in_chain {
            // Server-side nesting (AD): each group's transitive user members, by DN. A member entry sent malformed
            // leaves that group's members unknown.
            let mut partial = Vec::new();
            for (i, g) in groups.iter_mut().enumerate() {
                let filter = format!(
                    "(&{}(memberOf:1.2.840.113556.1.4.1941:={}))",
                    self.cfg.user_filter,
                    ldap3::ldap_escape(&g.dn)
                );
                let mut members = Vec::new();
                let searched = self
                    .search(&mut ldap, &self.cfg.user_base, self.cfg.user_scope, &filter, vec!["1.1".into()], |e| {
                        members.push(convert::normalize_dn(&e.dn));
                    })
                    .await?;
                if searched.malformed > 0 {
                    partial.push(i);
                    unreadable.push(Unreadable {
                        external_id: Some(g.external_id.clone()),
                        kind: EntryKind::Group,
                        entry: g.dn.clone(),
                        reason: format!("{} of its members were sent malformed by the server", searched.malformed),
                    });
                }
                g.member_dns.extend(members);
            }
            for i in partial.into_iter().rev() {
                groups.remove(i);
            }
        }
        let _ = ldap.unbind().await;

        let (resolved, foreign) = resolve(&mut users, &groups, &unreadable);
        const SHOWN: usize = 20;
        for u in unreadable.iter().take(SHOWN) {
            tracing::warn!(source = %self.name, entry = %u.entry, id = u.external_id.as_deref().unwrap_or("unknown"),
                kind = ?u.kind, reason = %u.reason, "LDAP entry could not be read: doubt, not a departure");
        }
        if unreadable.len() > SHOWN {
            tracing::warn!(source = %self.name, more = unreadable.len() - SHOWN, "More LDAP entries could not be read");
        }
        for u in &users {
            for w in &u.warnings {
                tracing::warn!(source = %self.name, "{w}");
            }
        }
        stats.users = users.len();
        stats.groups = resolved.len();
        stats.disabled = users.iter().filter(|u| !u.identity.active).count();
        stats.skipped_entries = unreadable.len();
        stats.foreign_members = foreign;
        tracing::info!(source = %self.name, server = %stats.server, users = stats.users, groups = stats.groups,
            disabled = stats.disabled, skipped = stats.skipped_entries, "LDAP snapshot read");
        let snapshot = Snapshot {
            source: self.name.clone(),
            // Collected in the records' own buffer (no second vector of every user at once), then shrunk to fit:
            // the records are larger than identities, and their buffer has growth slack.
            users: {
                let mut v: Vec<crate::model::Identity> = users.into_iter().map(|u| u.identity).collect();
                v.shrink_to_fit();
                v
            },
            groups: resolved,
            unreadable,
        };
        Ok((snapshot, stats))
    }
}

/// What one search read, beyond the entries handed to its callback.
struct Searched {
    /// The search, for people: `search of "ou=people,…" with (objectClass=…)`.
    what: String,
    /// Entries the server sent in a form ldap3 cannot parse: seen, not identified.
    malformed: usize,
}

impl Searched {
    /// Malformed entries have no readable id: each one is doubt about the whole source for this read.
    fn report_malformed(&self, kind: EntryKind, out: &mut Vec<Unreadable>) {
        out.extend((0..self.malformed).map(|_| Unreadable {
            external_id: None,
            kind,
            entry: format!("an entry of the {}", self.what),
            reason: "the server sent it malformed".to_string(),
        }));
    }
}

fn scope_of(s: LdapScope) -> Scope {
    match s {
        LdapScope::Base => Scope::Base,
        LdapScope::One => Scope::OneLevel,
        LdapScope::Sub => Scope::Subtree,
    }
}

fn tls_config(ca_file: &std::path::Path) -> Result<rustls::ClientConfig, String> {
    let pem = std::fs::read(ca_file).map_err(|e| format!("cannot read ca_file {}: {e}", ca_file.display()))?;
    let mut roots = rustls::RootCertStore::empty();
    let mut n = 0;
    for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
        let cert = cert.map_err(|e| format!("ca_file {} is not valid PEM: {e}", ca_file.display()))?;
        roots.add(cert).map_err(|e| format!("ca_file {}: {e}", ca_file.display()))?;
        n += 1;
    }
    if n == 0 {
        return Err(format!("ca_file {} holds no certificate", ca_file.display()));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SourceKind;

    /// A source for a server on `port` that accepts connections and never answers: a hung directory.
    fn source(port: u16, read_timeout: &str) -> LdapSource {
        let raw = serde_json::json!({
            "litellm": { "url": "http://127.0.0.1:4000", "api_key": "sk-x" },
            "sources": [{
                "name": "hung", "type": "ldap", "urls": [format!("ldap://127.0.0.1:{port}")],
                "bind_dn": "cn=x,dc=example,dc=org", "bind_password": "x",
                "user_base": "dc=example,dc=org", "group_base": "dc=example,dc=org",
                "operation_timeout": "60s", "read_timeout": read_timeout,
            }],
        });
        let cfg = crate::config::validate(&raw).unwrap_or_else(|p| panic!("{p:?}"));
        match cfg.sources.into_iter().next().map(|s| s.kind) {
            Some(SourceKind::Ldap(l)) => LdapSource::new("hung", &l),
            _ => panic!("not an LDAP source"),
        }
    }

    #[tokio::test]
    async fn a_hung_directory_fails_the_read_at_read_timeout() {
        let server = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let src = source(server.local_addr().unwrap().port(), "300ms");
        let held = tokio::spawn(async move { server.accept().await });
        let err = tokio::time::timeout(Duration::from_secs(10), src.snapshot_with_stats())
            .await
            .expect("the read ends by itself")
            .expect_err("nothing was read");
        assert!(err.to_string().contains("read_timeout (300ms)"), "{err}");
        held.abort();
    }

    #[tokio::test]
    async fn dropping_a_read_cancels_it_and_closes_its_connection() {
        use tokio::io::AsyncReadExt;
        let server = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let src = source(server.local_addr().unwrap().port(), "1h");
        let read = tokio::spawn(async move { src.snapshot_with_stats().await });
        let (mut conn, _) = tokio::time::timeout(Duration::from_secs(10), server.accept()).await.unwrap().unwrap();
        // The bind request arrives, and is never answered.
        let mut buf = [0u8; 256];
        let n = tokio::time::timeout(Duration::from_secs(10), conn.read(&mut buf)).await.unwrap().unwrap();
        assert!(n > 0, "the reader sent its bind");
        read.abort();
        // The reader's thread drops the connection: the server sees it closed.
        let closed = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                match conn.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
            }
        })
        .await;
        assert!(closed.is_ok(), "the cancelled read kept its connection open");
    }
}
