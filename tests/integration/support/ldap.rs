//! Real directory peers for the LDAP tests: a throw-away OpenLDAP `slapd` per test (scripts/peers/slapd.sh, data from
//! scripts/peers/gen_ldif.py) on its own free port, a Samba AD domain controller (scripts/peers/samba-ad.sh, one at a
//! time: fixed ports), directory edits as the admin (`ldapmodify`, `ldapadd`, `ldapdelete`), config writing, and a TCP
//! relay that cuts or stalls an LDAP connection mid-stream.
//!
//! Every peer is stopped by `Drop`, so a failing test does not leave a server behind; every external command runs
//! with a time limit.
//!
//! Just over 600 lines: two peers (slapd, Samba AD) and the relay share process and time limits and the config
//! writers, so they stay in one file.

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{watch, OwnedMutexGuard};

use crate::support::{eventually, free_port, free_port_pair, litellm_env, FaultProxy, Fixture, Run};

/// The service account the tests bind as (size-limited to 500 entries per search, paging unlimited).
pub const SERVICE_DN: &str = "cn=litellm-sync,ou=services,dc=example,dc=org";
pub const SERVICE_PASSWORD: &str = "sync-secret";
/// The rootdn, used only to change the directory.
pub const ADMIN_DN: &str = "cn=admin,dc=example,dc=org";
pub const ADMIN_PASSWORD: &str = "secret";
pub const PEOPLE: &str = "ou=people,dc=example,dc=org";
pub const GROUPS: &str = "ou=groups,dc=example,dc=org";

/// Limits for helper commands (slapadd of 10,000 users included).
const CMD_TIMEOUT: Duration = Duration::from_secs(120);

fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/peers").join(name)
}

/// Runs a command to completion within `limit`; panics with its output unless it exits 0.
pub async fn run_ok(cmd: &mut tokio::process::Command, what: &str, limit: Duration) -> Output {
    let out = run_status(cmd, what, limit).await;
    assert!(
        out.status.success(),
        "{what} failed ({})\n--- stdout ---\n{}\n--- stderr ---\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Runs a command to completion within `limit` (killed when it does not finish), whatever its exit status.
pub async fn run_status(cmd: &mut tokio::process::Command, what: &str, limit: Duration) -> Output {
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).kill_on_drop(true);
    tokio::time::timeout(limit, cmd.output())
        .await
        .unwrap_or_else(|_| panic!("{what} did not finish within {limit:?}"))
        .unwrap_or_else(|e| panic!("{what}: cannot run: {e}"))
}

/// Runs a command with `input` on stdin, within `limit`; panics unless it exits 0.
async fn run_with_input(mut cmd: tokio::process::Command, input: &str, what: &str, limit: Duration) -> Output {
    cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).kill_on_drop(true);
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("{what}: cannot run: {e}"));
    let mut stdin = child.stdin.take().expect("stdin");
    let input = input.to_string();
    let writer = tokio::spawn(async move {
        let _ = stdin.write_all(input.as_bytes()).await;
    });
    let out = tokio::time::timeout(limit, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("{what} did not finish within {limit:?}"))
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    let _ = writer.await;
    assert!(
        out.status.success(),
        "{what} failed ({})\n--- stdout ---\n{}\n--- stderr ---\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A port where nothing listens (bound, then released; never handed to a server by [`free_port`]).
pub fn closed_port() -> u16 {
    free_port()
}

/// The generated directory (gen_ldif.py) with every `mail` moved to `<user>@<mail_domain>`: LiteLLM refuses an
/// address another user has, and every test shares one LiteLLM.
pub async fn generate_ldif(users: usize, groups: usize, mail_domain: &str) -> String {
    let out = run_ok(
        tokio::process::Command::new("python3")
            .arg(script("gen_ldif.py"))
            .arg(users.to_string())
            .arg(groups.to_string()),
        "gen_ldif.py",
        CMD_TIMEOUT,
    )
    .await;
    let text = String::from_utf8(out.stdout).expect("gen_ldif.py writes UTF-8");
    let mut ldif = String::with_capacity(text.len() + users * 16);
    for line in text.lines() {
        match line.strip_prefix("mail: ").and_then(|m| m.strip_suffix("@example.org")) {
            Some(local) => {
                ldif.push_str("mail: ");
                ldif.push_str(local);
                ldif.push('@');
                ldif.push_str(mail_domain);
            }
            None => ldif.push_str(line),
        }
        ldif.push('\n');
    }
    ldif
}

/// One OpenLDAP slapd of one test. Stopped on drop (bounded by slapd.sh: SIGTERM, SIGKILL after 5 s).
pub struct Slapd {
    pub port: u16,
    pub tls: bool,
    /// slapd.sh's DIR (it deletes and recreates it on start).
    dir: PathBuf,
    stopped: bool,
    _tmp: tempfile::TempDir,
}

impl Slapd {
    /// Generates `users` users over `groups` team groups (plus the fixed ones), mail at `<user>@<mail_domain>`, loads
    /// them and starts slapd on a free port (`tls`: StartTLS on it, ldaps on port + 1, CA in [`Slapd::ca_file`]).
    pub async fn start(users: usize, groups: usize, mail_domain: &str, tls: bool) -> Slapd {
        Slapd::start_with(users, groups, mail_domain, tls, "").await
    }

    /// [`Slapd::start`] with `extra` LDIF records (blank-line separated) loaded after the generated directory.
    pub async fn start_with(users: usize, groups: usize, mail_domain: &str, tls: bool, extra: &str) -> Slapd {
        let mut ldif = generate_ldif(users, groups, mail_domain).await;
        ldif.push('\n');
        ldif.push_str(extra);
        let data = tempfile::tempdir().expect("temporary directory");
        let ldif_path = data.path().join("data.ldif");
        std::fs::write(&ldif_path, ldif).expect("write data.ldif");
        let mut failures = Vec::new();
        // A port taken between the check and slapd's bind (by another process) fails the start: try another.
        for _ in 0..3 {
            let tmp = tempfile::tempdir().expect("temporary directory");
            let port = if tls { free_port_pair() } else { free_port() };
            let mut s = Slapd { port, tls, dir: tmp.path().join("slapd"), stopped: false, _tmp: tmp };
            let mut cmd = tokio::process::Command::new("bash");
            cmd.arg(script("slapd.sh")).arg("start").arg(&s.dir).arg(port.to_string()).arg(&ldif_path);
            if tls {
                cmd.arg("tls");
            }
            let out = run_status(&mut cmd, "slapd.sh start", CMD_TIMEOUT).await;
            if out.status.success() && s.alive() {
                return s;
            }
            failures.push(format!(
                "slapd.sh start on port {port} failed ({})\n{}\n{}",
                out.status,
                String::from_utf8_lossy(&out.stderr),
                std::fs::read_to_string(s.dir.join("slapd.log")).unwrap_or_default()
            ));
            s.stop();
        }
        panic!("slapd would not start:\n{}", failures.join("\n"));
    }

    fn pid(&self) -> Option<u32> {
        std::fs::read_to_string(self.dir.join("pid")).ok()?.trim().parse().ok()
    }

    /// Whether this test's slapd process runs (a zombie does not count: nothing may reap it here).
    pub fn alive(&self) -> bool {
        self.pid().is_some_and(process_running)
    }

    /// `ldap://127.0.0.1:PORT` (plain, or StartTLS when started with TLS).
    pub fn url(&self) -> String {
        format!("ldap://127.0.0.1:{}", self.port)
    }

    /// `ldaps://127.0.0.1:PORT+1` (only with TLS).
    pub fn ldaps_url(&self) -> String {
        assert!(self.tls, "slapd was started without TLS");
        format!("ldaps://127.0.0.1:{}", self.port + 1)
    }

    /// The CA that signed the server certificate (only with TLS).
    pub fn ca_file(&self) -> PathBuf {
        assert!(self.tls, "slapd was started without TLS");
        self.dir.join("ca.pem")
    }

    fn client(&self, tool: &str) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new(tool);
        cmd.arg("-x").arg("-H").arg(self.url()).arg("-D").arg(ADMIN_DN).arg("-w").arg(ADMIN_PASSWORD);
        cmd
    }

    /// `ldapmodify` as the rootdn with this LDIF (changetype records: modify, modrdn, add, delete).
    pub async fn modify(&self, ldif: &str) {
        run_with_input(self.client("ldapmodify"), ldif, "ldapmodify", CMD_TIMEOUT).await;
    }

    /// `ldapadd` as the rootdn.
    pub async fn add(&self, ldif: &str) {
        run_with_input(self.client("ldapadd"), ldif, "ldapadd", CMD_TIMEOUT).await;
    }

    /// `ldapdelete` of one entry as the rootdn.
    pub async fn delete(&self, dn: &str) {
        run_ok(self.client("ldapdelete").arg(dn), "ldapdelete", CMD_TIMEOUT).await;
    }

    /// The first value of `attr` of the entry `dn` (operational attributes included), read as the rootdn.
    pub async fn attr(&self, dn: &str, attr: &str) -> Option<String> {
        let out = run_ok(
            self.client("ldapsearch")
                .arg("-LLL")
                .arg("-o")
                .arg("ldif-wrap=no")
                .arg("-s")
                .arg("base")
                .arg("-b")
                .arg(dn)
                .arg(attr),
            "ldapsearch",
            CMD_TIMEOUT,
        )
        .await;
        let prefix = format!("{}: ", attr.to_ascii_lowercase());
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .find(|l| l.to_ascii_lowercase().starts_with(&prefix))
            .map(|l| l[prefix.len()..].trim().to_string())
    }

    /// SIGKILL, at once (a crash, not a shutdown).
    pub fn kill(&mut self) {
        if let Some(pid) = self.pid() {
            let _ = std::process::Command::new("kill").arg("-9").arg(pid.to_string()).stderr(Stdio::null()).status();
        }
    }

    /// Stops slapd (bounded). Idempotent.
    pub fn stop(&mut self) {
        if self.stopped {
            return;
        }
        self.stopped = true;
        if !stop_with("slapd.sh", &self.dir) {
            self.kill();
        }
    }
}

impl Drop for Slapd {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Runs a peer script's `stop` on its directory; whether it succeeded.
fn stop_with(peer_script: &str, dir: &Path) -> bool {
    std::process::Command::new("bash")
        .arg(script(peer_script))
        .arg("stop")
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Whether `pid` exists and is not a zombie.
pub fn process_running(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // "pid (comm) S ...": the state follows the last ')'.
        Ok(stat) => stat.rsplit_once(')').is_some_and(|(_, rest)| !rest.trim_start().starts_with(['Z', 'X'])),
        Err(_) => false,
    }
}

/// A fresh CA (certificate only) that signed nothing the servers use: a wrong `ca_file`.
pub async fn other_ca(dir: &Path) -> PathBuf {
    let (key, pem) = (dir.join("other-ca.key"), dir.join("other-ca.pem"));
    run_ok(
        tokio::process::Command::new("openssl")
            .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=some other CA"])
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&pem),
        "openssl req (other CA)",
        CMD_TIMEOUT,
    )
    .await;
    pem
}

/// TOML string literal.
pub fn q(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

/// The `[[sources]]` table of an OpenLDAP source for this test: bound as the service account, people and groups
/// under dc=example,dc=org, user ids `<prefix><user_name>`, connect_timeout 5 s; `extra` adds keys (one per line).
pub fn openldap_source(fx: &Fixture, urls: &[String], extra: &str) -> String {
    let urls: Vec<String> = urls.iter().map(|u| q(u)).collect();
    format!(
        "[[sources]]\nname = {name}\ntype = \"ldap\"\nurls = [{urls}]\nbind_dn = {dn}\nbind_password = {pw}\nuser_base = {people}\n\
         group_base = {groups}\nuser_id_template = {template}\nconnect_timeout = \"5s\"\noperation_timeout = \"60s\"\n\
         {extra}\n",
        name = q(&fx.source),
        urls = urls.join(", "),
        dn = q(SERVICE_DN),
        pw = q(SERVICE_PASSWORD),
        people = q(PEOPLE),
        groups = q(GROUPS),
        template = q(&format!("{}{{user_name}}", fx.prefix())),
    )
}

/// Writes the test's config.toml: LiteLLM at `litellm_url` with the master key, `source` (a `[[sources]]` table),
/// then `rest` (rules, defaults, safety).
/// The LDAP and AD tests' rules: an admins group matched by `admins`, an engineering group matched by `eng`
/// (each a name or a DN, so that both forms are exercised), `team-*` groups as teams, and defaults.
pub fn directory_rules(fx: &Fixture, admins: &str, eng: &str) -> String {
    format!(
        r#"
[[rules]]
name = "admins"
match = {{ groups = [{admins}] }}
role = "proxy_admin"

[[rules]]
name = "eng"
match = {{ groups = [{eng}] }}
max_budget = 100.0
team = {{ id = "{p}{{group_name}}" }}

[[rules]]
name = "teams"
match = {{ group_glob = "team-*" }}
max_budget = 20.0
team = {{ id = "{p}{{group_name}}" }}

[defaults]
role = "internal_user"
max_budget = 5.0
"#,
        p = fx.prefix(),
        admins = q(admins),
        eng = q(eng),
    )
}

/// [`openldap_source`] with a wrong bind password.
pub fn with_wrong_password(source: &str) -> String {
    let right = format!("bind_password = {}", q(SERVICE_PASSWORD));
    assert!(source.contains(&right));
    source.replace(&right, "bind_password = \"wrong-password\"")
}

pub fn write_config(fx: &Fixture, litellm_url: &str, source: &str, rest: &str) {
    let (_, key) = litellm_env();
    fx.write_raw_config(&format!(
        "[litellm]\nurl = {url}\napi_key = {key}\n\n{source}\n{rest}\n",
        url = q(litellm_url),
        key = q(&key)
    ));
}

/// What the binary logs when LiteLLM's user list moved while it was paged through (users created or deleted
/// meanwhile): that run's view of LiteLLM may miss a user, and it may then write (a create answered 409 → update).
const LIST_MOVED: &str = "user list changed while it was read";

/// The steady-state check "this run writes nothing": runs `args` (a sync) through `proxy` and asserts zero POSTs.
/// The test holds the in-process world lock, but other processes may share the LiteLLM; a run that saw the user
/// list move under it is retried (at most 3 runs); a run with a steady view that wrote anything fails the test.
pub async fn assert_no_writes(fx: &Fixture, proxy: &FaultProxy, args: &[&str]) -> Run {
    for attempt in 1..=3 {
        proxy.reset_log();
        let run = fx.run(args).await;
        let writes = proxy.writes();
        if writes.is_empty() {
            return run;
        }
        assert!(
            run.stderr.contains(LIST_MOVED) && attempt < 3,
            "`litellm-sync {}` should write nothing, but made {writes:?}\n{}",
            args.join(" "),
            run.dump()
        );
        eprintln!("{}: LiteLLM's user list moved during the run (another writer); running it again", fx.source);
    }
    unreachable!()
}

/// Runs `args` (a plan) until its view of LiteLLM was steady (at most 3 runs): see [`assert_no_writes`].
pub async fn run_steady(fx: &Fixture, args: &[&str]) -> Run {
    let mut run = fx.run(args).await;
    for _ in 1..3 {
        if !run.stderr.contains(LIST_MOVED) {
            break;
        }
        eprintln!("{}: LiteLLM's user list moved during the run (another writer); running it again", fx.source);
        run = fx.run(args).await;
    }
    run
}

/// How the relay treats a connection once `limit` bytes went from the server to the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cut {
    /// Close both sides at once.
    Close,
    /// Stop forwarding until [`Relay::resume`], then forward the rest.
    Stall,
}

/// A TCP relay on 127.0.0.1 in front of a directory server that lets `limit` bytes of the server's answers through,
/// then cuts (or stalls) the connection: a search that dies in the middle of its pages.
pub struct Relay {
    pub port: u16,
    reached: watch::Receiver<usize>,
    go: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Relay {
    pub async fn start(upstream_port: u16, limit: usize, cut: Cut) -> Relay {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind relay");
        let port = listener.local_addr().expect("relay address").port();
        let (reached_tx, reached) = watch::channel(0usize);
        let (go, go_rx) = watch::channel(false);
        let reached_tx = Arc::new(reached_tx);
        let task = tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else { return };
                let (reached_tx, go_rx) = (reached_tx.clone(), go_rx.clone());
                tokio::spawn(async move {
                    let _ = relay_one(client, upstream_port, limit, cut, reached_tx, go_rx).await;
                });
            }
        });
        Relay { port, reached, go, task }
    }

    pub fn url(&self) -> String {
        format!("ldap://127.0.0.1:{}", self.port)
    }

    /// How many connections hit the byte limit so far.
    pub fn cuts(&self) -> usize {
        *self.reached.borrow()
    }

    /// Waits (bounded) until a connection hit the limit.
    pub async fn wait_cut(&self, limit: Duration) {
        eventually("the LDAP relay to reach its byte limit", limit, || async { (self.cuts() > 0).then_some(()) }).await;
    }

    /// Lets stalled connections go on.
    pub fn resume(&self) {
        let _ = self.go.send(true);
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.task.abort();
        let _ = self.go.send(true);
    }
}

async fn relay_one(
    mut client: TcpStream,
    upstream_port: u16,
    limit: usize,
    cut: Cut,
    reached: Arc<watch::Sender<usize>>,
    mut go: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let mut upstream = TcpStream::connect(("127.0.0.1", upstream_port)).await?;
    let (mut cr, mut cw) = client.split();
    let (mut ur, mut uw) = upstream.split();
    let down = async {
        let mut sent = 0usize;
        let mut buf = vec![0u8; 16 * 1024];
        let mut limited = true;
        loop {
            let n = ur.read(&mut buf).await?;
            if n == 0 {
                return Ok::<(), std::io::Error>(());
            }
            let mut chunk = &buf[..n];
            if limited && sent + chunk.len() >= limit {
                let take = limit - sent;
                cw.write_all(&chunk[..take]).await?;
                cw.flush().await?;
                sent += take;
                reached.send_modify(|c| *c += 1);
                match cut {
                    Cut::Close => return Ok(()),
                    Cut::Stall => {
                        while !*go.borrow_and_update() {
                            if go.changed().await.is_err() {
                                return Ok(());
                            }
                        }
                        limited = false;
                        chunk = &chunk[take..];
                    }
                }
            }
            cw.write_all(chunk).await?;
            sent += chunk.len();
        }
    };
    let up = tokio::io::copy(&mut cr, &mut uw);
    tokio::select! {
        r = down => r,
        r = up => r.map(|_| ()),
    }
    // Dropping both streams here closes both connections.
}

/// The one Samba AD domain controller of this process (its ports are fixed: 389, 636, 3268, 3269).
static SAMBA: LazyLock<Arc<tokio::sync::Mutex<()>>> = LazyLock::new(|| Arc::new(tokio::sync::Mutex::new(())));

pub const AD_ADMIN: &str = "Administrator@example.org";
pub const AD_ADMIN_PASSWORD: &str = "Passw0rd!Test";
pub const AD_URL: &str = "ldap://127.0.0.1:389";

/// A Samba AD DC for the domain EXAMPLE.ORG (dc=example,dc=org), provisioned in a temporary directory. Stopped on
/// drop (bounded by samba-ad.sh: SIGTERM to its process group, SIGKILL after 10 s).
pub struct SambaAd {
    dir: PathBuf,
    stopped: bool,
    _tmp: tempfile::TempDir,
    _one_at_a_time: OwnedMutexGuard<()>,
}

impl SambaAd {
    pub async fn start() -> SambaAd {
        let guard = SAMBA.clone().lock_owned().await;
        let tmp = tempfile::tempdir().expect("temporary directory");
        let mut s = SambaAd { dir: tmp.path().join("dc"), stopped: false, _tmp: tmp, _one_at_a_time: guard };
        // Provisioning ~5-10 s, first start ~3 s; installing the packages (first use) ~10-60 s.
        let out = run_status(
            tokio::process::Command::new("bash").arg(script("samba-ad.sh")).arg("start").arg(&s.dir),
            "samba-ad.sh start",
            Duration::from_secs(300),
        )
        .await;
        if !out.status.success() {
            s.stop();
            panic!(
                "samba-ad.sh start failed ({})\n{}\n{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        s
    }

    /// `samba-tool ARGS` on this DC's database; returns stdout.
    pub async fn tool(&self, args: &[&str]) -> String {
        let out = run_ok(
            tokio::process::Command::new("bash").arg(script("samba-ad.sh")).arg("tool").arg(&self.dir).args(args),
            &format!("samba-tool {}", args.join(" ")),
            Duration::from_secs(60),
        )
        .await;
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn client(&self, tool: &str) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new(tool);
        cmd.arg("-x").arg("-H").arg(AD_URL).arg("-D").arg(AD_ADMIN).arg("-w").arg(AD_ADMIN_PASSWORD);
        cmd
    }

    /// `ldapadd` as Administrator.
    pub async fn add(&self, ldif: &str) {
        run_with_input(self.client("ldapadd"), ldif, "ldapadd (AD)", CMD_TIMEOUT).await;
    }

    /// `ldapmodify` as Administrator.
    pub async fn modify(&self, ldif: &str) {
        run_with_input(self.client("ldapmodify"), ldif, "ldapmodify (AD)", CMD_TIMEOUT).await;
    }

    pub fn stop(&mut self) {
        if self.stopped {
            return;
        }
        self.stopped = true;
        stop_with("samba-ad.sh", &self.dir);
    }
}

impl Drop for SambaAd {
    fn drop(&mut self) {
        self.stop();
    }
}
