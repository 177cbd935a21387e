//! The real `airlock` binary as a child process: `airlock serve --config …`
//! on 127.0.0.1:0, with a config built like the in-process servers' (see
//! [`crate::harness::config`]) and written as TOML to a temp dir. Every
//! process is SIGKILLed on drop if still running, also when a test panics.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use airlock::config::Config;

use crate::common::*;
use crate::harness::{self, Backends};

/// A config file for `airlock serve` and the directory it lives in (logs,
/// and the local storage at `data/`).
pub struct ServeSetup {
    dir: tempfile::TempDir,
    config: Config,
}

impl ServeSetup {
    /// The standard test config on `backends` (storage at `data/`), changed
    /// by `adjust`.
    pub fn new(backends: Backends, adjust: impl FnOnce(&mut Config)) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut config = harness::config(backends, &dir.path().join("data"));
        adjust(&mut config);
        Self::write(dir, config)
    }

    /// Another node beside this one: the same config (the same S3 prefix and
    /// cache prefix, so the same uploads), a directory and local data of
    /// its own.
    pub fn another_node(&self) -> Self {
        self.another_node_with(|_| {})
    }

    /// [`Self::another_node`], its config changed by `adjust`.
    pub fn another_node_with(&self, adjust: impl FnOnce(&mut Config)) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut config = self.config.clone();
        config.storage.path = dir.path().join("data");
        adjust(&mut config);
        Self::write(dir, config)
    }

    fn write(dir: tempfile::TempDir, mut config: Config) -> Self {
        // Port 0: each server gets a port of its own from the kernel and
        // logs it (see `ServeSetup::serve`).
        config.server.listen = SocketAddr::from(([127, 0, 0, 1], 0));
        let setup = Self { dir, config };
        let text = toml::to_string(&setup.config).expect("config as TOML");
        std::fs::write(setup.config_path(), text).unwrap();
        setup
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("airlock.toml")
    }

    /// The local storage directory.
    pub fn data(&self) -> &Path {
        &self.config.storage.path
    }

    /// Starts `airlock serve --config …`, reads the address it listens on
    /// from its log (`<run>.log`) and waits for `/healthz`.
    pub async fn serve(&self, run: &str) -> ServerProcess {
        self.serve_with(run, &[]).await
    }

    /// [`Self::serve`] with more environment variables.
    pub async fn serve_with(&self, run: &str, env: &[(&str, &str)]) -> ServerProcess {
        let log_path = self.dir.path().join(format!("{run}.log"));
        let log = std::fs::File::create(&log_path).unwrap();
        let mut command = Command::new(env!("CARGO_BIN_EXE_airlock"));
        command
            .arg("serve")
            .arg("--config")
            .arg(self.config_path())
            .env("RUST_LOG", "info");
        // Nothing from the environment overrides the file.
        for name in [
            "AIRLOCK_CONFIG",
            "AIRLOCK_LISTEN",
            "AIRLOCK_TEST_FAULT",
            "AIRLOCK_ADMIN_TOKEN",
            "AIRLOCK_REDIS_URL",
            "AIRLOCK_S3_ACCESS_KEY_ID",
            "AIRLOCK_S3_SECRET_ACCESS_KEY",
        ] {
            command.env_remove(name);
        }
        for client in &self.config.clients {
            let name = client.name.to_ascii_uppercase().replace('-', "_");
            command.env_remove(format!("AIRLOCK_CLIENT_{name}_API_KEY"));
        }
        let child = command
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let started = Instant::now();
        let mut server = ServerProcess {
            child,
            log: log_path,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        };
        // Up once it has logged the address it got and answers there.
        let http = reqwest::Client::new();
        let up = eventually(Duration::from_secs(15), || {
            let exited = server.child.try_wait().unwrap();
            let addr = listening_addr(&read_log(&server.log));
            let http = &http;
            async move {
                if let Some(status) = exited {
                    return Some(Err(status));
                }
                let addr = addr?;
                let response = http
                    .get(format!("http://{addr}/healthz"))
                    .send()
                    .await
                    .ok()?;
                (response.status() == 200).then_some(Ok(addr))
            }
        })
        .await;
        server.addr = match up {
            Some(Ok(addr)) => addr,
            Some(Err(status)) => panic!("airlock exited with {status} at start:\n{}", server.log()),
            None => panic!(
                "airlock did not answer /healthz within 15 s:\n{}",
                server.log()
            ),
        };
        eprintln!("{run}: up on {} in {:?}", server.addr, started.elapsed());
        server
    }
}

/// Every file under `dir`, recursively (none if it does not exist).
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.filter_map(Result::ok) {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                files.push(path);
            }
        }
    }
    files
}

fn read_log(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// The address of the `airlock listening addr=…` line in a server's log.
fn listening_addr(log: &str) -> Option<SocketAddr> {
    let line = log.lines().find(|l| l.contains("airlock listening"))?;
    let line = strip_ansi(line);
    let (_, rest) = line.split_once("addr=")?;
    rest.split_whitespace().next()?.parse().ok()
}

/// `text` without ANSI escape sequences (`ESC [ … letter`).
fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// A running `airlock serve`; SIGKILLed on drop if still running.
pub struct ServerProcess {
    pub child: Child,
    log: PathBuf,
    /// Where it listens: a port of its own, new at every start.
    pub addr: SocketAddr,
}

impl ServerProcess {
    pub fn log(&self) -> String {
        read_log(&self.log)
    }

    pub fn base(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `base` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base())
    }

    /// The record of upload `id`, as `alice` (the standard client) reads it.
    pub async fn record(&self, id: &str) -> serde_json::Value {
        reqwest::Client::new()
            .get(self.url(&format!("/v1/uploads/{id}")))
            .bearer_auth(harness::ALICE)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// The value of the `/metrics` sample `series` (name and labels, as
    /// printed), 0 when there is none.
    pub async fn metric(&self, series: &str) -> f64 {
        let text = reqwest::get(self.url("/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        text.lines()
            .filter_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
            .map(|value| value.trim().parse::<f64>().unwrap())
            .sum()
    }

    /// Sends SIGTERM, as a service manager stopping it would.
    pub fn terminate(&self) {
        let pid = self.child.id().to_string();
        let status = Command::new("kill")
            .arg("-TERM")
            .arg(&pid)
            .status()
            .unwrap();
        assert!(status.success(), "kill -TERM {pid}");
    }

    /// Waits up to `limit` for the process to exit.
    pub async fn wait_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        eventually(limit, || {
            let status = self.child.try_wait().unwrap();
            async move { status }
        })
        .await
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}
