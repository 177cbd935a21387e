//! Locks in Redis, shared by every node: `SET NX PX` to take one, and
//! scripts that renew or release it only for the token that holds it.

use std::time::Duration;

use async_trait::async_trait;
use redis::Script;
use redis::aio::ConnectionManager;

use super::{LockBackend, LockError};

const RENEW: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
";

const RELEASE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
";

/// Locks under a key prefix of a Redis server.
pub struct RedisLocks {
    connection: ConnectionManager,
    prefix: String,
    renew: Script,
    release: Script,
}

impl RedisLocks {
    /// Locks named `PREFIX` + name, over `connection`.
    pub fn new(connection: ConnectionManager, prefix: &str) -> Self {
        Self {
            connection,
            prefix: prefix.to_string(),
            renew: Script::new(RENEW),
            release: Script::new(RELEASE),
        }
    }

    fn key(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }
}

fn failed(what: &'static str) -> impl FnOnce(redis::RedisError) -> LockError {
    move |err| LockError::Backend {
        what: format!("redis: {what}"),
        source: Box::new(err),
    }
}

fn millis(ttl: Duration) -> u64 {
    u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1)
}

#[async_trait]
impl LockBackend for RedisLocks {
    async fn try_acquire(&self, name: &str, token: &str, ttl: Duration) -> Result<bool, LockError> {
        let mut conn = self.connection.clone();
        let set: Option<String> = redis::cmd("SET")
            .arg(self.key(name))
            .arg(token)
            .arg("NX")
            .arg("PX")
            .arg(millis(ttl))
            .query_async(&mut conn)
            .await
            .map_err(failed("SET NX"))?;
        Ok(set.is_some())
    }

    async fn renew(&self, name: &str, token: &str, ttl: Duration) -> Result<bool, LockError> {
        let mut conn = self.connection.clone();
        let renewed: i64 = self
            .renew
            .key(self.key(name))
            .arg(token)
            .arg(millis(ttl))
            .invoke_async(&mut conn)
            .await
            .map_err(failed("renew script"))?;
        Ok(renewed == 1)
    }

    async fn release(&self, name: &str, token: &str) -> Result<(), LockError> {
        let mut conn = self.connection.clone();
        let _released: i64 = self
            .release
            .key(self.key(name))
            .arg(token)
            .invoke_async(&mut conn)
            .await
            .map_err(failed("release script"))?;
        Ok(())
    }
}
