//! What serde cannot check: names, uniqueness, ranges and how settings
//! relate to each other. Each refusal names its key.

use std::collections::HashSet;

use super::{CacheBackendKind, Config, ConfigError, StorageBackend};

fn invalid(key: impl Into<String>, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        reason: reason.into(),
    }
}

impl Config {
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
            ("tus.expiration_seconds", self.tus.expiration_seconds),
            (
                "tus.expiry_sweep_interval_seconds",
                self.tus.expiry_sweep_interval_seconds,
            ),
        ] {
            if value == 0 {
                return Err(invalid(key, "must be at least 1"));
            }
        }
        validate_origins(&self.server.cors.allowed_origins)?;
        if self.tus.lock_ttl_ms < 1000 {
            // It is renewed every third of it, while a PATCH runs.
            return Err(invalid("tus.lock_ttl_ms", "must be at least 1000"));
        }
        if self.server.keep_alive_timeout_ms > self.server.header_read_timeout_ms {
            // hyper's header timer also runs while a connection waits for
            // its next request, so a longer keep-alive would never apply.
            return Err(invalid(
                "server.keep_alive_timeout_ms",
                "must not exceed server.header_read_timeout_ms",
            ));
        }
        if self.server.post_store_workers == 0 && self.cache.backend != CacheBackendKind::Redis {
            return Err(invalid(
                "server.post_store_workers",
                "0 (a node that only takes uploads) needs the Redis cache, whose job stream other nodes run; with the memory cache this node's jobs would never run",
            ));
        }
        if self.server.post_store_max_attempts == 0 {
            return Err(invalid(
                "server.post_store_max_attempts",
                "must be at least 1",
            ));
        }
        if self.server.post_store_visibility_seconds == 0 {
            return Err(invalid(
                "server.post_store_visibility_seconds",
                "must be at least 1",
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
            unique_name(&client.name, &mut names, || at("name"))?;
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
            unique_name(&plugin.name, &mut plugins, || at("name"))?;
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

/// Checks `name` is a valid name not in `seen`, and adds it; `key` names
/// the setting in the error.
fn unique_name<'a>(
    name: &'a str,
    seen: &mut HashSet<&'a str>,
    key: impl Fn() -> String,
) -> Result<(), ConfigError> {
    if !valid_name(name) {
        return Err(invalid(
            key(),
            format!("{name:?} must match [a-z0-9_-]{{1,64}}"),
        ));
    }
    if !seen.insert(name) {
        return Err(invalid(key(), format!("{name:?} is used twice")));
    }
    Ok(())
}

/// Plugin and client names: `[a-z0-9_-]{1,64}`.
pub fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

/// Each allowed origin is `*` alone, or `scheme://host[:port]` as a browser
/// sends it in `Origin` (no path, no trailing slash).
fn validate_origins(origins: &[String]) -> Result<(), ConfigError> {
    let key = "server.cors.allowed_origins";
    if origins.iter().any(|o| o == "*") {
        return if origins.len() == 1 {
            Ok(())
        } else {
            Err(invalid(key, "`*` allows every origin: list it alone"))
        };
    }
    for origin in origins {
        let Some((scheme, host)) = origin.split_once("://") else {
            return Err(invalid(
                key,
                format!("`{origin}` has no scheme (https://…)"),
            ));
        };
        let well_formed = !scheme.is_empty()
            && scheme
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b))
            && !host.is_empty()
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b));
        if !well_formed {
            return Err(invalid(
                key,
                format!("`{origin}` is not scheme://host[:port] (no path, no trailing slash)"),
            ));
        }
    }
    Ok(())
}
