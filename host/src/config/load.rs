//! Reading the configuration: from a file or the embedded defaults, with
//! secrets from the environment, then validated.

use std::path::Path;

use super::{Config, ConfigError, EXAMPLE};

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
}
