//! The configuration file: the example loads, bad files fail naming the key.

use std::path::Path;

use airlock::config::{Config, ConfigError};

use crate::common::root;

fn load_text(text: &str) -> Result<Config, ConfigError> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("airlock.toml");
    std::fs::write(&path, text).unwrap();
    Config::load(&path)
}

#[test]
fn the_example_config_loads_with_every_section() {
    let config = Config::load(&root().join("airlock.example.toml")).unwrap();
    assert_eq!(config.clients.len(), 2);
    assert_eq!(config.plugins.len(), 4);
    // Plugin paths are relative to the file.
    assert!(config.plugins[0].component.starts_with(root()));
}

#[test]
fn embedded_defaults_are_the_example_without_clients() {
    let config = Config::embedded(Path::new("/somewhere")).unwrap();
    assert!(config.clients.is_empty());
    assert_eq!(
        config.plugins[0].component,
        Path::new("/somewhere/content-sniff.wasm")
    );
}

#[test]
fn an_unknown_key_is_named() {
    let err = load_text("[server]\nlisten = \"127.0.0.1:1\"\nlisten_port = 3\n").unwrap_err();
    assert!(matches!(err, ConfigError::Parse { .. }));
    assert!(err.to_string().contains("listen_port"), "{err}");
}

#[test]
fn a_bad_budget_key_is_named() {
    let text = "[[plugins]]\nname = \"p\"\ncomponent = \"p.wasm\"\nhook = \"processor\"\n[plugins.budget]\nfuell = 1\n";
    let err = load_text(text).unwrap_err();
    assert!(err.to_string().contains("fuell"), "{err}");
}

#[test]
fn invalid_values_name_the_key() {
    let cases = [
        (
            "[[clients]]\nname = \"Web App\"\napi_key = \"0123456789abcdef\"\n",
            "clients[0].name",
        ),
        (
            "[[clients]]\nname = \"web\"\napi_key = \"short\"\n",
            "clients[0].api_key",
        ),
        (
            "[[plugins]]\nname = \"p\"\ncomponent = \"p.wasm\"\nhook = \"processor\"\n[[plugins]]\nname = \"p\"\ncomponent = \"q.wasm\"\nhook = \"extension\"\n",
            "plugins[1].name",
        ),
        ("[cache]\nprefix = \"a:b\"\n", "cache.prefix"),
        // No worker on a node whose jobs no other node can see.
        (
            "[server]\npost_store_workers = 0\n",
            "server.post_store_workers",
        ),
        (
            "[server]\npost_store_max_attempts = 0\n",
            "server.post_store_max_attempts",
        ),
    ];
    for (text, key) in cases {
        match load_text(text) {
            Err(ConfigError::Invalid { key: k, .. }) => assert_eq!(k, key),
            other => panic!("{text}: {other:?}"),
        }
    }
}

#[test]
fn secrets_come_from_the_environment() {
    let mut config: Config = toml::from_str("[[clients]]\nname = \"web-app\"\n").unwrap();
    config.apply_env(|name| match name {
        "AIRLOCK_CLIENT_WEB_APP_API_KEY" => Some("from-env-0123456789".into()),
        "AIRLOCK_REDIS_URL" => Some("redis://10.0.0.1:6380/1".into()),
        _ => None,
    });
    assert_eq!(config.clients[0].api_key, "from-env-0123456789");
    assert_eq!(config.cache.redis_url, "redis://10.0.0.1:6380/1");
    config.validate().unwrap();
}
