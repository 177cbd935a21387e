//! The operator's configuration: one TOML file, every key documented in
//! `airlock.example.toml`, secrets overridable from the environment.

mod load;
mod validate;

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::budget::Budget;
use crate::cache::CachePolicy;
use crate::runtime::{HookKind, RuntimeConfig};
use crate::storage::S3Settings;
use crate::supervisor::Containment;
pub use crate::upload::FailurePolicy;

pub use self::validate::valid_name;

/// The checked-in example configuration, also the embedded defaults.
pub const EXAMPLE: &str = include_str!("../../../airlock.example.toml");

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
    /// Resumable uploads (the tus protocol, under `/v1/tus`).
    pub tus: TusConfig,
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
    /// Threads (at the lowest priority, apart from the request path) and
    /// tasks running post-store jobs (default: the number of cores); 0,
    /// with Redis, for a node that only takes uploads.
    pub post_store_workers: usize,
    /// Attempts of a post-store job that fails for a host reason (storage
    /// down…) before it goes to the dead letters.
    pub post_store_max_attempts: u32,
    /// With Redis: a job taken by a worker that has not finished it within
    /// this is taken over by another (the worker is presumed dead).
    pub post_store_visibility_seconds: u64,
    /// How long shutdown waits for in-flight work.
    pub shutdown_grace_seconds: u64,
    /// Serve the upload page at `/` and the operator dashboard at `/admin`
    /// (built into the binary).
    pub pages: bool,
    /// Which browser origins may call the API.
    pub cors: CorsConfig,
}

/// `[server.cors]`: cross-origin requests from browsers. Clients send their
/// key as a Bearer token, never a cookie: credentials are not allowed, so
/// `*` is safe where any origin may upload.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CorsConfig {
    /// Origins (`https://app.example.com`, scheme, host and port) whose
    /// pages may call the API, or `["*"]` for any; empty: none (no CORS
    /// headers at all).
    pub allowed_origins: Vec<String>,
    /// How long a browser may reuse a preflight's answer.
    pub max_age_seconds: u64,
}

impl Default for CorsConfig {
    fn default() -> Self {
        Self {
            allowed_origins: Vec::new(),
            max_age_seconds: 600,
        }
    }
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
            post_store_workers: std::thread::available_parallelism().map_or(2, |n| n.get()),
            post_store_max_attempts: 8,
            post_store_visibility_seconds: 120,
            shutdown_grace_seconds: 30,
            pages: true,
            cors: CorsConfig::default(),
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

/// `[tus]`: resumable uploads.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TusConfig {
    /// An unfinished upload not written to for this long is removed with
    /// its staged bytes (`Upload-Expires`).
    pub expiration_seconds: u64,
    /// How often expired uploads are looked for.
    pub expiry_sweep_interval_seconds: u64,
    /// The largest resumable upload (`Tus-Max-Size`); clients' own
    /// `max_body_bytes` apply too. Default: the largest body any client
    /// may send.
    pub max_size_bytes: Option<u64>,
    /// How long a request waits for another one writing to the same upload
    /// before it gets 423.
    pub lock_wait_ms: u64,
    /// A lock whose holder stopped renewing it (a dead node) is free after
    /// this long.
    pub lock_ttl_ms: u64,
}

impl Default for TusConfig {
    fn default() -> Self {
        Self {
            expiration_seconds: 24 * 3600,
            expiry_sweep_interval_seconds: 600,
            max_size_bytes: None,
            lock_wait_ms: 3000,
            lock_ttl_ms: 30_000,
        }
    }
}

impl Config {
    /// The largest resumable upload.
    pub fn tus_max_size(&self) -> u64 {
        self.tus.max_size_bytes.unwrap_or_else(|| {
            self.clients
                .iter()
                .filter_map(|c| c.max_body_bytes)
                .fold(self.server.max_body_bytes, u64::max)
        })
    }
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
