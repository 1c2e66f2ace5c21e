//! How long a full LDAP read takes: litellm-sync's `LdapSource::snapshot_with_stats()` against a real, loopback
//! OpenLDAP slapd, next to `ldapsearch` making the same two paged searches, and next to bare ldap3 making them
//! (entries parsed, then dropped) to tell the library's share from litellm-sync's conversion and resolution.
//!
//!     cargo bench --bench ldap_read
//!
//! Environment:
//!   LDAP_BENCH_SIZES=10000,100000   numbers of generated users (6 fixed users are added; groups = N/50)
//!   LDAP_BENCH_RUNS=3               timed runs per side, after one untimed warm-up per side
//!   LDAP_BENCH_RUNTIME=multi        tokio runtime: `multi` (as src/main.rs) or `current` (one thread)
//!
//! Needs python3 and slapd/ldapsearch (scripts/peers/slapd.sh installs the latter on Debian when run as root).
//! The bind is the size-limited service account (500 per search, paging unlimited), as in the tests.

use std::alloc::{GlobalAlloc, Layout, System};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::time::{Duration, Instant};

use ldap3::adapters::{Adapter, PagedResults};
use ldap3::{LdapConnAsync, Scope, SearchEntry};
use litellm_sync::config::{LdapSourceConfig, SourceKind};
use litellm_sync::sources::ldap::LdapSource;

#[path = "common/mod.rs"]
mod common;
use common::Slapd;

// ---------------------------------------------------------------------------------------------------------------
// Heap accounting: live and peak bytes requested from the allocator (the system allocator, as the binary uses).

struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

fn grew(n: usize) {
    let now = LIVE.fetch_add(n, Relaxed) + n;
    if now > PEAK.load(Relaxed) {
        PEAK.fetch_max(now, Relaxed);
    }
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        let p = System.alloc(l);
        if !p.is_null() {
            grew(l.size());
        }
        p
    }
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        let p = System.alloc_zeroed(l);
        if !p.is_null() {
            grew(l.size());
        }
        p
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        System.dealloc(p, l);
        LIVE.fetch_sub(l.size(), Relaxed);
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        let q = System.realloc(p, l, new);
        if !q.is_null() {
            if new >= l.size() {
                grew(new - l.size());
            } else {
                LIVE.fetch_sub(l.size() - new, Relaxed);
            }
        }
        q
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// Heap use of one measured closure: (peak above the starting level, still live above it at the end).
struct Heap {
    peak: usize,
    held: usize,
}

fn heap_start() -> usize {
    let now = LIVE.load(Relaxed);
    PEAK.store(now, Relaxed);
    now
}

fn heap_since(base: usize) -> Heap {
    Heap { peak: PEAK.load(Relaxed).saturating_sub(base), held: LIVE.load(Relaxed).saturating_sub(base) }
}

/// A field of /proc/self/status in bytes (VmHWM, VmRSS); 0 where unavailable.
fn proc_status_bytes(field: &str) -> usize {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with(field)).and_then(|l| {
                l[field.len() + 1..].trim().trim_end_matches("kB").trim().parse::<usize>().ok().map(|kb| kb * 1024)
            })
        })
        .unwrap_or(0)
}

/// Resets VmHWM to the current RSS (Linux ≥ 4.0), so that each N's peak is its own. False if refused.
fn reset_hwm() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// CPU time (user + system) used so far by this process (`self`) or by its waited-for children: less noisy than
/// wall time on a shared machine, and the client's own cost, whatever slapd's share of the cores.
fn cpu_time(children: bool) -> Duration {
    // SAFETY: getrusage only writes the struct it is given.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    let who = if children { libc::RUSAGE_CHILDREN } else { libc::RUSAGE_SELF };
    if unsafe { libc::getrusage(who, &mut u) } != 0 {
        return Duration::ZERO;
    }
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(u.ru_utime) + tv(u.ru_stime)
}

fn mib(b: usize) -> String {
    format!("{:.1} MiB", b as f64 / (1024.0 * 1024.0))
}

// ---------------------------------------------------------------------------------------------------------------
// slapd, started with the project's script and always stopped.

const SERVICE_DN: &str = "cn=litellm-sync,ou=services,dc=example,dc=org";
const SERVICE_PW: &str = "sync-secret";
const USER_BASE: &str = "ou=people,dc=example,dc=org";
const GROUP_BASE: &str = "ou=groups,dc=example,dc=org";
/// The source's defaults for an OpenLDAP flavour (src/config/validate.rs, ldap_source) …
const USER_FILTER: &str = "(objectClass=inetOrgPerson)";
const GROUP_FILTER: &str = "(|(objectClass=groupOfNames)(objectClass=groupOfUniqueNames)(objectClass=posixGroup))";
/// … and the attributes it requests (AttrMap::user_attrs / group_attrs with the default map).
const USER_ATTRS: &[&str] = &["cn", "entryUUID", "mail", "uid"];
const GROUP_ATTRS: &[&str] = &["cn", "entryUUID", "member", "memberUid", "uniqueMember"];
const PAGE: u32 = 500;
/// Users and groups gen_ldif.py always adds.
const FIXED_USERS: usize = 6;
const FIXED_GROUPS: usize = 3;

// ---------------------------------------------------------------------------------------------------------------
// The three readers.

fn source_config(url: &str) -> LdapSourceConfig {
    let raw = serde_json::json!({
        "litellm": { "url": "http://127.0.0.1:4000", "api_key": "sk-bench" },
        "sources": [{
            "name": "bench",
            "type": "ldap",
            "urls": [url],
            "bind_dn": SERVICE_DN,
            "bind_password": SERVICE_PW,
            "user_base": USER_BASE,
            "group_base": GROUP_BASE,
            "page_size": PAGE,
        }],
    });
    let cfg = litellm_sync::config::validate(&raw).unwrap_or_else(|p| panic!("bench config is invalid: {p:?}"));
    match cfg.sources.into_iter().next().map(|s| s.kind) {
        Some(SourceKind::Ldap(l)) => {
            // Guard the like-for-like comparison: the ldapsearch side hard-codes these.
            assert_eq!(l.user_filter, USER_FILTER);
            assert_eq!(l.group_filter, GROUP_FILTER);
            assert_eq!(l.attributes.user_attrs(), USER_ATTRS);
            assert_eq!(l.attributes.group_attrs(), GROUP_ATTRS);
            assert!(l.disabled_filter.is_none() && !l.in_chain, "the source would make more than two searches");
            *l
        }
        _ => panic!("the bench config's source is not LDAP"),
    }
}

struct Counts {
    users: usize,
    groups: usize,
    /// Resolved user memberships over all groups (snapshot only).
    members: usize,
    nested: usize,
    foreign: usize,
}

async fn litellm_sync_snapshot(src: &LdapSource) -> Counts {
    let (snap, stats) = src.snapshot_with_stats().await.unwrap_or_else(|e| panic!("snapshot failed: {e}"));
    assert_eq!(stats.users, snap.users.len());
    Counts {
        users: snap.users.len(),
        groups: snap.groups.len(),
        members: snap.groups.iter().map(|g| g.members.len()).sum(),
        nested: snap.groups.iter().map(|g| g.member_groups.len()).sum(),
        foreign: stats.foreign_members,
    }
}

/// The same two paged searches on one connection with bare ldap3: entries parsed (SearchEntry), then dropped.
async fn ldap3_bare(url: &str) -> Counts {
    let (conn, mut ldap) = LdapConnAsync::new(url).await.expect("connect");
    ldap3::drive!(conn);
    ldap.simple_bind(SERVICE_DN, SERVICE_PW).await.expect("bind").success().expect("bind accepted");
    let mut counts = [0usize; 2];
    for (i, (base, filter, attrs)) in
        [(USER_BASE, USER_FILTER, USER_ATTRS), (GROUP_BASE, GROUP_FILTER, GROUP_ATTRS)].into_iter().enumerate()
    {
        let adapters: Vec<Box<dyn Adapter<_, _>>> = vec![Box::new(PagedResults::new(PAGE as i32))];
        let mut stream =
            ldap.streaming_search_with(adapters, base, Scope::Subtree, filter, attrs.to_vec()).await.expect("search");
        while let Some(e) = stream.next().await.expect("next entry") {
            let e = SearchEntry::construct(e);
            std::hint::black_box(&e);
            counts[i] += 1;
        }
        stream.finish().await.success().expect("search result");
    }
    let _ = ldap.unbind().await;
    Counts { users: counts[0], groups: counts[1], members: 0, nested: 0, foreign: 0 }
}

/// `ldapsearch` for users, then for groups, output to /dev/null (or counted, for the check). Returns the time of
/// each and, when counting, the number of entries each printed.
fn ldapsearch(port: u16, count: bool) -> [(Duration, usize); 2] {
    let url = format!("ldap://127.0.0.1:{port}");
    let pr = format!("pr={PAGE}/noprompt");
    [(USER_BASE, USER_FILTER, USER_ATTRS), (GROUP_BASE, GROUP_FILTER, GROUP_ATTRS)].map(|(base, filter, attrs)| {
        let mut cmd = Command::new("ldapsearch");
        cmd.args(["-x", "-LLL", "-H", &url, "-D", SERVICE_DN, "-w", SERVICE_PW, "-b", base, "-E", &pr, filter])
            .args(attrs)
            .stdin(Stdio::null())
            .stderr(Stdio::piped())
            .stdout(if count { Stdio::piped() } else { Stdio::null() });
        let t = Instant::now();
        let out = cmd.output().expect("run ldapsearch");
        let took = t.elapsed();
        assert!(out.status.success(), "ldapsearch -b {base} failed: {}", String::from_utf8_lossy(&out.stderr));
        let n = if count { out.stdout.split(|&b| b == b'\n').filter(|l| l.starts_with(b"dn:")).count() } else { 0 };
        (took, n)
    })
}

// ---------------------------------------------------------------------------------------------------------------

fn env_list(name: &str, default: &[usize]) -> Vec<usize> {
    match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => v
            .split(',')
            .map(|s| s.trim().replace('_', "").parse().unwrap_or_else(|_| panic!("{name}: {s:?} is not a number")))
            .collect(),
        _ => default.to_vec(),
    }
}

fn median(d: &[Duration]) -> Duration {
    let mut v = d.to_vec();
    v.sort();
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2
    }
}

fn min(d: &[Duration]) -> Duration {
    d.iter().copied().min().unwrap_or_default()
}

fn secs(d: Duration) -> String {
    format!("{:.3} s", d.as_secs_f64())
}

struct Row {
    n: usize,
    groups: usize,
    sync: Vec<Duration>,
    bare: Vec<Duration>,
    ls: Vec<Duration>,
    /// CPU time of each side's client (this process, or the ldapsearch children).
    sync_cpu: Vec<Duration>,
    bare_cpu: Vec<Duration>,
    ls_cpu: Vec<Duration>,
    snapshot_heap: Heap,
    bare_heap_peak: usize,
    hwm: usize,
    rss_before: usize,
    /// Snapshot.users: len and capacity (unused capacity is held as long as the snapshot is).
    users_len: usize,
    users_cap: usize,
}

fn main() {
    if !common::requested("ldap_read", "`cargo bench --bench ldap_read`") {
        return;
    }
    let _ = rustls::crypto::ring::default_provider().install_default();
    let sizes = env_list("LDAP_BENCH_SIZES", &[10_000, 100_000]);
    let runs = env_list("LDAP_BENCH_RUNS", &[3])[0].max(1);
    let runtime = std::env::var("LDAP_BENCH_RUNTIME").unwrap_or_else(|_| "multi".into());
    let rt = match runtime.as_str() {
        "current" => tokio::runtime::Builder::new_current_thread().enable_all().build(),
        "multi" => tokio::runtime::Builder::new_multi_thread().enable_all().build(),
        other => panic!("LDAP_BENCH_RUNTIME={other:?}: use multi or current"),
    }
    .expect("tokio runtime");
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let script = root.join("scripts/peers/slapd.sh");
    let gen = root.join("scripts/peers/gen_ldif.py");
    let hwm_resets = reset_hwm();
    eprintln!(
        "ldap_read: sizes {sizes:?}, {runs} run(s) per side after a warm-up, page size {PAGE}, tokio {runtime} runtime, \
         {} CPU(s)",
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0)
    );

    let mut rows = Vec::new();
    for &n in &sizes {
        let groups = (n / 50).max(1);
        let tmp = tempfile::Builder::new().prefix("ldap-bench-").tempdir().expect("temp dir");
        let ldif = tmp.path().join("data.ldif");
        let t = Instant::now();
        let out = Command::new("python3")
            .arg(&gen)
            .args([n.to_string(), groups.to_string()])
            .stdout(std::fs::File::create(&ldif).expect("create ldif"))
            .status()
            .expect("run gen_ldif.py");
        assert!(out.success(), "gen_ldif.py failed");
        let t_gen = t.elapsed();
        let t = Instant::now();
        // Declared after `tmp`, so dropped (stopped) before the directory is removed, on panic too.
        let slapd = Slapd::start(&script, &tmp.path().join("slapd"), &ldif);
        eprintln!(
            "N={n}: LDIF of {n}+{FIXED_USERS} users, {groups}+{FIXED_GROUPS} groups in {}; slapd loaded and up on \
             {} in {}",
            secs(t_gen),
            slapd.url(),
            secs(t.elapsed())
        );
        let src = LdapSource::new("bench", &source_config(&slapd.url()));
        let want_users = n + FIXED_USERS;
        let want_groups = groups + FIXED_GROUPS;

        // Warm-up, with every count checked: a fast wrong answer is worth nothing.
        let c = rt.block_on(litellm_sync_snapshot(&src));
        assert_eq!((c.users, c.groups), (want_users, want_groups), "snapshot users/groups");
        if groups <= n {
            // Each generated user is in exactly one team; alice, bob, carol, dave, frank are the fixed members.
            assert_eq!(c.members, n + 5, "resolved user memberships");
            assert_eq!(c.nested, groups + 2, "nested group memberships");
            assert_eq!(c.foreign, 0, "members outside the searches");
        }
        let c = rt.block_on(ldap3_bare(&slapd.url()));
        assert_eq!((c.users, c.groups), (want_users, want_groups), "bare ldap3 users/groups");
        let [(_, lu), (_, lg)] = ldapsearch(slapd.port, true);
        assert_eq!((lu, lg), (want_users, want_groups), "ldapsearch users/groups");

        // Timed runs, interleaved so that drift (other builds on the machine) hits every side alike.
        let rss_before = proc_status_bytes("VmRSS");
        if hwm_resets {
            reset_hwm();
        }
        let mut row = Row {
            n,
            groups,
            sync: vec![],
            bare: vec![],
            ls: vec![],
            sync_cpu: vec![],
            bare_cpu: vec![],
            ls_cpu: vec![],
            snapshot_heap: Heap { peak: 0, held: 0 },
            bare_heap_peak: 0,
            hwm: 0,
            rss_before,
            users_len: 0,
            users_cap: 0,
        };
        for r in 0..runs {
            // litellm-sync: the snapshot is measured while still alive (held), then dropped outside the timing.
            let base = heap_start();
            let c = cpu_time(false);
            let t = Instant::now();
            let snap = rt.block_on(src.snapshot_with_stats()).unwrap_or_else(|e| panic!("snapshot failed: {e}"));
            let took = t.elapsed();
            row.sync_cpu.push(cpu_time(false).saturating_sub(c));
            let h = heap_since(base);
            assert_eq!(snap.0.users.len(), want_users);
            (row.users_len, row.users_cap) = (snap.0.users.len(), snap.0.users.capacity());
            drop(snap);
            row.sync.push(took);
            if h.peak > row.snapshot_heap.peak {
                row.snapshot_heap = h;
            }

            let base = heap_start();
            let c0 = cpu_time(false);
            let t = Instant::now();
            let c = rt.block_on(ldap3_bare(&slapd.url()));
            row.bare.push(t.elapsed());
            row.bare_cpu.push(cpu_time(false).saturating_sub(c0));
            row.bare_heap_peak = row.bare_heap_peak.max(heap_since(base).peak);
            assert_eq!(c.users, want_users);

            let c0 = cpu_time(true);
            let [(u, _), (g, _)] = ldapsearch(slapd.port, false);
            row.ls.push(u + g);
            row.ls_cpu.push(cpu_time(true).saturating_sub(c0));
            eprintln!(
                "N={n} run {}/{runs}: litellm-sync {} (CPU {}), bare ldap3 {} (CPU {}), ldapsearch {} (users {} + groups \
                 {}, CPU {})",
                r + 1,
                secs(took),
                secs(*row.sync_cpu.last().unwrap()),
                secs(*row.bare.last().unwrap()),
                secs(*row.bare_cpu.last().unwrap()),
                secs(u + g),
                secs(u),
                secs(g),
                secs(*row.ls_cpu.last().unwrap()),
            );
        }
        row.hwm = if hwm_resets { proc_status_bytes("VmHWM") } else { 0 };
        rows.push(row);
        drop(slapd);
        drop(tmp);
    }

    println!();
    println!(
        "LDAP read, loopback slapd, service-account bind, paged {PAGE}; {runs} timed run(s) per side after a warm-up; \
         tokio {runtime} runtime"
    );
    println!(
        "  litellm-sync = LdapSource::snapshot_with_stats() (users + groups searches, conversion, member resolution)"
    );
    println!("  bare ldap3   = the same two paged searches with ldap3, entries parsed and dropped");
    println!("  ldapsearch   = `ldapsearch -x -LLL -E pr={PAGE}/noprompt` users + groups, output to /dev/null");
    println!("  users/s = (N + {FIXED_USERS}) / median wall time of the whole read (users + groups) on that side");
    println!();
    println!(
        "| {:>7} | {:>6} | {:>21} | {:>21} | {:>21} | {:>9} | {:>12} | {:>12} |",
        "N",
        "groups",
        "litellm-sync med/min",
        "bare ldap3 med/min",
        "ldapsearch med/min",
        "sync/lds",
        "sync users/s",
        "lds users/s"
    );
    println!("|{:-<9}|{:-<8}|{:-<23}|{:-<23}|{:-<23}|{:-<11}|{:-<14}|{:-<14}|", "", "", "", "", "", "", "", "");
    for r in &rows {
        let users = (r.n + FIXED_USERS) as f64;
        let (sm, bm, lm) = (median(&r.sync), median(&r.bare), median(&r.ls));
        println!(
            "| {:>7} | {:>6} | {:>21} | {:>21} | {:>21} | {:>8.2}x | {:>12.0} | {:>12.0} |",
            r.n,
            r.groups + FIXED_GROUPS,
            format!("{} / {}", secs(sm), secs(min(&r.sync))),
            format!("{} / {}", secs(bm), secs(min(&r.bare))),
            format!("{} / {}", secs(lm), secs(min(&r.ls))),
            sm.as_secs_f64() / lm.as_secs_f64(),
            users / sm.as_secs_f64(),
            users / lm.as_secs_f64(),
        );
    }
    println!();
    println!("CPU time of each client (user + system, median): slapd's share of the cores does not count in it.");
    println!(
        "| {:>7} | {:>12} | {:>12} | {:>12} | {:>13} | {:>10} |",
        "N", "litellm-sync", "bare ldap3", "ldapsearch", "sync - ldap3", "sync/lds"
    );
    println!("|{:-<9}|{:-<14}|{:-<14}|{:-<14}|{:-<15}|{:-<12}|", "", "", "", "", "", "");
    for r in &rows {
        let (s, b, l) = (median(&r.sync_cpu), median(&r.bare_cpu), median(&r.ls_cpu));
        println!(
            "| {:>7} | {:>12} | {:>12} | {:>12} | {:>13} | {:>9.2}x |",
            r.n,
            secs(s),
            secs(b),
            secs(l),
            format!("{:+.3} s", s.as_secs_f64() - b.as_secs_f64()),
            s.as_secs_f64() / l.as_secs_f64().max(1e-9),
        );
    }
    println!();
    println!(
        "Memory of the bench process (heap = bytes requested from the allocator, above the level before the read):"
    );
    println!(
        "| {:>7} | {:>22} | {:>22} | {:>22} | {:>14} | {:>16} |",
        "N", "snapshot heap peak", "snapshot heap held", "bare ldap3 heap peak", "RSS before", "peak RSS (HWM)"
    );
    println!("|{:-<9}|{:-<24}|{:-<24}|{:-<24}|{:-<16}|{:-<18}|", "", "", "", "", "", "");
    for r in &rows {
        let per_user = |b: usize| format!("{} ({:.0} B/user)", mib(b), b as f64 / (r.n + FIXED_USERS) as f64);
        println!(
            "| {:>7} | {:>22} | {:>22} | {:>22} | {:>14} | {:>16} |",
            r.n,
            per_user(r.snapshot_heap.peak),
            per_user(r.snapshot_heap.held),
            mib(r.bare_heap_peak),
            mib(r.rss_before),
            if hwm_resets { mib(r.hwm) } else { "n/a".into() },
        );
    }
    let ident = std::mem::size_of::<litellm_sync::model::Identity>();
    for r in &rows {
        println!(
            "N={}: Snapshot.users holds len {} / capacity {} x {ident} B (size_of Identity) = {}, of which {} is unused \
             capacity",
            r.n,
            r.users_len,
            r.users_cap,
            mib(r.users_cap * ident),
            mib((r.users_cap - r.users_len) * ident)
        );
    }
    if let Some(r) = rows.iter().find(|r| r.n == 100_000) {
        println!();
        println!(
            "N=100000: peak RSS of the bench process during the timed runs {} (VmHWM, reset before them); the \
             snapshot read peaks at {} of heap and hands back {} (the Snapshot itself).",
            if hwm_resets { mib(r.hwm) } else { "n/a".into() },
            mib(r.snapshot_heap.peak),
            mib(r.snapshot_heap.held)
        );
    }
    println!("Process peak RSS over the whole bench (VmHWM since the last reset): {}", mib(proc_status_bytes("VmHWM")));
}
