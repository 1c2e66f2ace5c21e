//! What the three benches share: the `--bench` guard, environment knobs, free ports, stopping a child process,
//! and a loopback slapd. Each bench includes it with `#[path = "common/mod.rs"] mod common;` and uses a part.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// `cargo test --all-targets` runs bench targets too (without `--bench`), whatever `test = false` says: there, a
/// benchmark only says how to run it. True when the bench should run.
pub fn requested(name: &str, how: &str) -> bool {
    if std::env::args().skip(1).any(|a| a == "--bench") {
        return true;
    }
    eprintln!("{name} is a benchmark: run {how} (not run under cargo test)");
    false
}

/// A count from the environment (`10_000` and `10,000` are accepted), or `default` when unset or empty.
pub fn env_usize(name: &str, default: usize) -> usize {
    match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => {
            v.trim().replace(['_', ','], "").parse().unwrap_or_else(|_| panic!("{name}={v:?} is not a number"))
        }
        _ => default,
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind a loopback port").local_addr().expect("local addr").port()
}

/// SIGTERM, up to `grace` for the process to exit, then SIGKILL.
pub fn stop_child(child: &mut Child, grace: Duration) {
    let pid = child.id().to_string();
    let _ = Command::new("kill").args(["-TERM", &pid]).status();
    let t = Instant::now();
    while t.elapsed() < grace {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    kill_child(child);
}

/// SIGKILL unless it already exited, and reap it.
pub fn kill_child(child: &mut Child) {
    if let Ok(None) = child.try_wait() {
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// slapd from scripts/peers/slapd.sh on a free port, stopped when dropped.
pub struct Slapd {
    script: PathBuf,
    dir: PathBuf,
    pub port: u16,
}

impl Slapd {
    pub fn start(script: &Path, dir: &Path, ldif: &Path) -> Slapd {
        let port = free_port();
        let out = Command::new("bash")
            .arg(script)
            .arg("start")
            .arg(dir)
            .arg(port.to_string())
            .arg(ldif)
            .stdin(Stdio::null())
            .output()
            .expect("run scripts/peers/slapd.sh");
        // Built before the check so that a half-started slapd is still stopped.
        let s = Slapd { script: script.to_path_buf(), dir: dir.to_path_buf(), port };
        assert!(
            out.status.success(),
            "slapd.sh start failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        s
    }

    pub fn url(&self) -> String {
        format!("ldap://127.0.0.1:{}", self.port)
    }
}

impl Drop for Slapd {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(&self.script)
            .arg("stop")
            .arg(&self.dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .status();
    }
}
