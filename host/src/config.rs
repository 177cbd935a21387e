//! The operator's configuration: one TOML file, every key documented in
//! `airlock.example.toml`, secrets overridable from the environment.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::budget::Budget;
use crate::cache::CachePolicy;
use crate::runtime::{HookKind, RuntimeConfig};
use crate::storage::S3Settings;
use crate::supervisor::Containment;
pub use crate::upload::FailurePolicy;

/// The checked-in example configuration, also the embedded defaults.
pub const EXAMPLE: &str = include_str!("../../airlock.example.toml");

/// The whole configuration.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// HTTP server.
    pub server: ServerConfig,
    /// Where uploads are stored.
    pub storage: StorageConfig,
    /// The plugins' shared cache.
    pub cache: CacheConfig,
    /// The WebAssembly runtime.
    pub runtime: RuntimeConfig,
    /// The operators' API.
    pub admin: AdminConfig,
    /// API clients; none means unauthenticated uploads, loopback only.
    pub clients: Vec<ClientConfig>,
    /// Plugins, per hook, in `order`.
    pub plugins: Vec<PluginConfig>,
}

/// `[server]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Largest upload body for clients that set no limit of their own.
    pub max_body_bytes: u64,
    /// Uploads processed (plugins and storage) at once; more wait for a
    /// slot once their body has arrived. Receiving a body takes no slot.
    pub max_concurrent_uploads: usize,
    /// Upload requests one client may have open at once, for clients that
    /// set no `max_concurrent_uploads` of their own; more get 429.
    pub max_uploads_per_client: usize,
    /// Connections open at once; further ones wait in the listen backlog.
    pub max_connections: usize,
    /// The whole head of a request must arrive within this of the
    /// connection being ready for it (accepted, or done with the previous
    /// request); otherwise the connection is closed.
    pub header_read_timeout_ms: u64,
    /// A keep-alive connection with no request for this long is closed.
    pub keep_alive_timeout_ms: u64,
    /// A response its client does not read for this long: the connection
    /// is dropped.
    pub write_timeout_ms: u64,
    /// An upload whose body sends nothing for this long gets 408.
    pub body_read_timeout_ms: u64,
    /// An upload's whole body must arrive within this, or it gets 408.
    pub upload_deadline_seconds: u64,
    /// Post-store jobs that may wait; when full, jobs are dropped (and
    /// counted), never blocking an upload.
    pub post_store_queue: usize,
    /// Tasks running post-store hooks.
    pub post_store_workers: usize,
    /// How long shutdown waits for in-flight work.
    pub shutdown_grace_seconds: u64,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            max_body_bytes: 100 << 20,
            max_concurrent_uploads: 64,
            max_uploads_per_client: 256,
            max_connections: 1024,
            header_read_timeout_ms: 15_000,
            keep_alive_timeout_ms: 10_000,
            write_timeout_ms: 30_000,
            body_read_timeout_ms: 15_000,
            upload_deadline_seconds: 900,
            post_store_queue: 1024,
            post_store_workers: 2,
            shutdown_grace_seconds: 30,
        }
    }
}

/// `[storage]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StorageConfig {
    /// `local` or `s3`.
    pub backend: StorageBackend,
    /// Root directory of the local backend (also holds temp files).
    pub path: PathBuf,
    /// Settings of the S3 backend.
    pub s3: S3Settings,
    /// Objects no record owns (left by a crash) are removed once this old.
    /// Must exceed the longest time between storing an upload's content
    /// and its record.
    pub orphan_grace_seconds: u64,
    /// How often the orphan sweep runs after the one at start; 0 = only at
    /// start.
    pub orphan_sweep_interval_seconds: u64,
}

impl Default for StorageConfig {
    fn default() -> Self {
        Self {
            backend: StorageBackend::Local,
            path: PathBuf::from("./data"),
            s3: S3Settings::default(),
            orphan_grace_seconds: 3600,
            orphan_sweep_interval_seconds: 3600,
        }
    }
}

/// Storage backends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StorageBackend {
    /// Local filesystem.
    Local,
    /// S3 or an S3-compatible server.
    S3,
}

/// `[cache]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CacheConfig {
    /// `memory` or `redis`.
    pub backend: CacheBackendKind,
    /// Prefix of every key: `<prefix>:<plugin>:<key>`.
    pub prefix: String,
    /// Longest a cache operation may take before the plugin sees
    /// `unavailable`.
    pub op_timeout_ms: u64,
    /// Size of the in-memory cache, in bytes.
    pub memory_capacity_bytes: u64,
    /// Redis URL (`redis://host:port/db`); `AIRLOCK_REDIS_URL` overrides.
    pub redis_url: String,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            backend: CacheBackendKind::Memory,
            prefix: "airlock".into(),
            op_timeout_ms: 250,
            memory_capacity_bytes: 256 << 20,
            redis_url: "redis://127.0.0.1:6379/0".into(),
        }
    }
}

/// Cache backends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CacheBackendKind {
    /// In this process.
    Memory,
    /// Redis, shared by every node.
    Redis,
}

/// `[admin]`
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdminConfig {
    /// Bearer token of the admin API (`/admin/…`); empty disables it.
    /// `AIRLOCK_ADMIN_TOKEN` overrides.
    pub token: String,
}

/// `[[clients]]`: one API client.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientConfig {
    /// Name, shown in records and logs.
    pub name: String,
    /// Bearer token. `AIRLOCK_CLIENT_<NAME>_API_KEY` overrides (name upper-cased,
    /// `-` as `_`).
    #[serde(default)]
    pub api_key: String,
    /// Largest upload; defaults to `server.max_body_bytes`.
    #[serde(default)]
    pub max_body_bytes: Option<u64>,
    /// Content types accepted (`image/*` style wildcards); empty = any.
    #[serde(default)]
    pub allowed_content_types: Vec<String>,
    /// Upload requests open at once; defaults to
    /// `server.max_uploads_per_client`.
    #[serde(default)]
    pub max_concurrent_uploads: Option<usize>,
}

/// `[[plugins]]`: one plugin on one hook.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginConfig {
    /// Name: `[a-z0-9_-]{1,64}`, unique. Names the cache namespace and metrics.
    pub name: String,
    /// Path to the component (relative to the config file).
    pub component: PathBuf,
    /// The hook; must match the component's world.
    pub hook: HookKind,
    /// Order within the hook, lowest first.
    #[serde(default)]
    pub order: i32,
    /// What a budget stop, crash or plugin error does to the upload.
    #[serde(default)]
    pub on_failure: FailurePolicy,
    /// What one invocation may use.
    #[serde(default)]
    pub budget: Budget,
    /// The plugin's cache rules and quota.
    #[serde(default)]
    pub cache: CachePolicy,
    /// Its bulkhead and circuit breaker.
    #[serde(default)]
    pub containment: Containment,
}

/// The configuration is unusable.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config {path}: {reason}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
    /// TOML syntax, unknown keys, wrong types (the message names the key).
    #[error("invalid config {path}: {reason}")]
    Parse {
        /// The file.
        path: String,
        /// The parser's message.
        reason: String,
    },
    /// A value that parses but makes no sense.
    #[error("invalid config: {key}: {reason}")]
    Invalid {
        /// Dotted path of the key.
        key: String,
        /// What is wrong.
        reason: String,
    },
}

fn invalid(key: impl Into<String>, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        reason: reason.into(),
    }
}

impl Config {
    /// Reads, applies environment overrides and validates `path`. Relative
    /// plugin paths are resolved against the file's directory.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        let mut config: Config = toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        for plugin in &mut config.plugins {
            if plugin.component.is_relative() {
                plugin.component = base.join(&plugin.component);
            }
        }
        config.apply_env(|name| std::env::var(name).ok());
        config.validate()?;
        Ok(config)
    }

    /// The embedded defaults: `airlock.example.toml` (local disk,
    /// in-memory cache, the example plugins with their budgets) without
    /// clients, its plugins taken from `plugins_dir`.
    pub fn embedded(plugins_dir: &Path) -> Result<Self, ConfigError> {
        let mut config: Config = toml::from_str(EXAMPLE).map_err(|e| ConfigError::Parse {
            path: "airlock.example.toml (embedded)".into(),
            reason: e.to_string(),
        })?;
        config.clients.clear();
        for plugin in &mut config.plugins {
            if let Some(file) = plugin.component.file_name() {
                plugin.component = plugins_dir.join(file);
            }
        }
        config.apply_env(|name| std::env::var(name).ok());
        config.validate()?;
        Ok(config)
    }

    /// Secrets and URLs from the environment take precedence over the file.
    pub fn apply_env(&mut self, var: impl Fn(&str) -> Option<String>) {
        if let Some(token) = var("AIRLOCK_ADMIN_TOKEN") {
            self.admin.token = token;
        }
        if let Some(url) = var("AIRLOCK_REDIS_URL") {
            self.cache.redis_url = url;
        }
        if let Some(key) = var("AIRLOCK_S3_ACCESS_KEY_ID") {
            self.storage.s3.access_key_id = Some(key);
        }
        if let Some(secret) = var("AIRLOCK_S3_SECRET_ACCESS_KEY") {
            self.storage.s3.secret_access_key = Some(secret);
        }
        for client in &mut self.clients {
            let name = client.name.to_ascii_uppercase().replace('-', "_");
            if let Some(key) = var(&format!("AIRLOCK_CLIENT_{name}_API_KEY")) {
                client.api_key = key;
            }
        }
    }

    /// Checks what serde cannot: names, uniqueness, ranges.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.server.max_concurrent_uploads == 0 {
            return Err(invalid(
                "server.max_concurrent_uploads",
                "must be at least 1",
            ));
        }
        for (key, value) in [
            (
                "server.max_uploads_per_client",
                self.server.max_uploads_per_client as u64,
            ),
            ("server.max_connections", self.server.max_connections as u64),
            (
                "server.header_read_timeout_ms",
                self.server.header_read_timeout_ms,
            ),
            (
                "server.keep_alive_timeout_ms",
                self.server.keep_alive_timeout_ms,
            ),
            ("server.write_timeout_ms", self.server.write_timeout_ms),
            (
                "server.body_read_timeout_ms",
                self.server.body_read_timeout_ms,
            ),
            (
                "server.upload_deadline_seconds",
                self.server.upload_deadline_seconds,
            ),
            (
                "storage.orphan_grace_seconds",
                self.storage.orphan_grace_seconds,
            ),
        ] {
            if value == 0 {
                return Err(invalid(key, "must be at least 1"));
            }
        }
        if self.server.keep_alive_timeout_ms > self.server.header_read_timeout_ms {
            // hyper's header timer also runs while a connection waits for
            // its next request, so a longer keep-alive would never apply.
            return Err(invalid(
                "server.keep_alive_timeout_ms",
                "must not exceed server.header_read_timeout_ms",
            ));
        }
        if self.server.post_store_workers == 0 || self.server.post_store_queue == 0 {
            return Err(invalid(
                "server.post_store_workers",
                "workers and queue must be at least 1",
            ));
        }
        if !self.admin.token.is_empty() && self.admin.token.len() < 16 {
            return Err(invalid("admin.token", "must be at least 16 characters"));
        }
        if self.cache.prefix.is_empty() || self.cache.prefix.contains(':') {
            return Err(invalid(
                "cache.prefix",
                "must be non-empty and contain no ':'",
            ));
        }
        if self.storage.backend == StorageBackend::S3 && self.storage.s3.bucket.is_empty() {
            return Err(invalid(
                "storage.s3.bucket",
                "required when storage.backend = \"s3\"",
            ));
        }
        let mut names = HashSet::new();
        let mut keys = HashSet::new();
        for (i, client) in self.clients.iter().enumerate() {
            let at = |field: &str| format!("clients[{i}].{field}");
            if !valid_name(&client.name) {
                return Err(invalid(
                    at("name"),
                    format!("{:?} must match [a-z0-9_-]{{1,64}}", client.name),
                ));
            }
            if !names.insert(client.name.as_str()) {
                return Err(invalid(
                    at("name"),
                    format!("{:?} is used twice", client.name),
                ));
            }
            if client.api_key.len() < 16 {
                return Err(invalid(
                    at("api_key"),
                    "must be at least 16 characters (or set AIRLOCK_CLIENT_<NAME>_API_KEY)",
                ));
            }
            if !keys.insert(client.api_key.as_str()) {
                return Err(invalid(at("api_key"), "is the same as another client's"));
            }
            if client.max_concurrent_uploads == Some(0) {
                return Err(invalid(at("max_concurrent_uploads"), "must be at least 1"));
            }
            for pattern in &client.allowed_content_types {
                if !pattern.contains('/') {
                    return Err(invalid(
                        at("allowed_content_types"),
                        format!("{pattern:?} is not a type/subtype pattern"),
                    ));
                }
            }
        }
        let mut plugins = HashSet::new();
        for (i, plugin) in self.plugins.iter().enumerate() {
            let at = |field: &str| format!("plugins[{i}].{field}");
            if !valid_name(&plugin.name) {
                return Err(invalid(
                    at("name"),
                    format!("{:?} must match [a-z0-9_-]{{1,64}}", plugin.name),
                ));
            }
            if !plugins.insert(plugin.name.as_str()) {
                return Err(invalid(
                    at("name"),
                    format!("{:?} is used twice", plugin.name),
                ));
            }
            if plugin.budget.memory_bytes > self.runtime.max_memory_bytes {
                return Err(invalid(
                    at("budget.memory_bytes"),
                    format!(
                        "{} is above runtime.max_memory_bytes = {}",
                        plugin.budget.memory_bytes, self.runtime.max_memory_bytes
                    ),
                ));
            }
            if plugin.budget.timeout_ms == 0 {
                return Err(invalid(at("budget.timeout_ms"), "must be at least 1"));
            }
        }
        Ok(())
    }
}

/// Plugin and client names: `[a-z0-9_-]{1,64}`.
pub fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}
