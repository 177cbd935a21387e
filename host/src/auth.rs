//! API clients: who may upload, with what limits, identified by API key.

use std::collections::HashMap;
use std::sync::{PoisonError, RwLock};

use sha2::{Digest, Sha256};

use crate::text::essence;

/// An API client and its upload policy.
#[derive(Debug, Clone)]
pub struct Client {
    /// Its name.
    pub name: String,
    /// Largest body it may upload.
    pub max_body_bytes: u64,
    /// Accepted content types (`image/*` wildcards); empty = any.
    pub allowed_content_types: Vec<String>,
    /// Upload requests it may have open at once.
    pub max_concurrent_uploads: usize,
}

impl Client {
    /// Whether `content_type` is one this client may upload.
    pub fn allows(&self, content_type: &str) -> bool {
        let ty = essence(content_type);
        self.allowed_content_types.is_empty()
            || self.allowed_content_types.iter().any(|pattern| {
                let pattern = pattern.to_ascii_lowercase();
                match pattern.strip_suffix("/*") {
                    Some("*") => true,
                    Some(major) => ty.split('/').next() == Some(major),
                    None => pattern == ty,
                }
            })
    }
}

/// The API clients; swapped whole on reload.
pub struct ApiClients {
    clients: RwLock<Clients>,
}

struct Clients {
    by_key_digest: HashMap<[u8; 32], Client>,
    anonymous: Option<Client>,
}

impl ApiClients {
    /// Clients identified by API key.
    pub fn with_keys(clients: impl IntoIterator<Item = (String, Client)>) -> Self {
        let by_key_digest = clients
            .into_iter()
            .map(|(key, client)| (digest(&key), client))
            .collect();
        Self::from(Clients {
            by_key_digest,
            anonymous: None,
        })
    }

    /// No keys: every request acts as `client` (loopback-only deployments).
    pub fn open(client: Client) -> Self {
        Self::from(Clients {
            by_key_digest: HashMap::new(),
            anonymous: Some(client),
        })
    }

    fn from(clients: Clients) -> Self {
        Self {
            clients: RwLock::new(clients),
        }
    }

    /// Takes the clients of `other` (a reloaded configuration).
    pub fn replace_with(&self, other: ApiClients) {
        let clients = other
            .clients
            .into_inner()
            .unwrap_or_else(PoisonError::into_inner);
        *self.clients.write().unwrap_or_else(PoisonError::into_inner) = clients;
    }

    /// The client holding `key`; without keys configured, the anonymous
    /// client whatever the key.
    pub fn client(&self, key: Option<&str>) -> Option<Client> {
        let clients = self.clients.read().unwrap_or_else(PoisonError::into_inner);
        if let Some(client) = &clients.anonymous {
            return Some(client.clone());
        }
        // Looked up by digest so the key never sits in a comparison.
        clients.by_key_digest.get(&digest(key?)).cloned()
    }
}

/// A new secret token: 64 hex digits (244 random bits, from the OS).
pub fn random_token() -> String {
    let (a, b) = (uuid::Uuid::new_v4(), uuid::Uuid::new_v4());
    format!("{}{}", a.simple(), b.simple())
}

/// SHA-256 of a key or token, the form in which they are compared.
pub fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.trim().as_bytes()).into()
}
