//! Redis cache backend: shared by every node of a cluster.

use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{AsyncCommands, Script};

use super::{BackendError, CacheBackend, Put, PutMode, PutOutcome};

/// Per-namespace accounting lives beside the keys: a sorted set of keys by
/// expiry time and a hash of their sizes with a running `#total`. Each write
/// settles at most 32 expired keys, so no call ever walks the keyspace.
const ACCOUNTING: &str = r"
local function forget(k)
  local size = redis.call('HGET', KEYS[3], k)
  if size then
    redis.call('HINCRBY', KEYS[3], '#total', -tonumber(size))
    redis.call('HDEL', KEYS[3], k)
  end
  redis.call('ZREM', KEYS[2], k)
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
for _, k in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, 32)) do
  forget(k)
end
";

const PUT: &str = r"
local exists = redis.call('EXISTS', KEYS[1]) == 1
if not exists then forget(KEYS[1]) end
if ARGV[3] == 'add' and exists then return 0 end
local ttl = tonumber(ARGV[2])
local size = #KEYS[1] + #ARGV[1]
local old = tonumber(redis.call('HGET', KEYS[3], KEYS[1]) or '0')
local keys = redis.call('ZCARD', KEYS[2])
local total = tonumber(redis.call('HGET', KEYS[3], '#total') or '0')
if (not exists and keys + 1 > tonumber(ARGV[4])) or (size > old and total - old + size > tonumber(ARGV[5])) then
  return 2
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ttl)
redis.call('ZADD', KEYS[2], now + ttl, KEYS[1])
redis.call('HSET', KEYS[3], KEYS[1], size)
redis.call('HINCRBY', KEYS[3], '#total', size - old)
for i = 2, 3 do
  if redis.call('PTTL', KEYS[i]) < ttl then redis.call('PEXPIRE', KEYS[i], ttl) end
end
return 1
";

const DELETE: &str = r"
local removed = redis.call('DEL', KEYS[1])
forget(KEYS[1])
return removed
";

/// A cache in Redis, reached through a reconnecting connection manager with
/// connect and response timeouts.
pub struct RedisBackend {
    connection: ConnectionManager,
    put: Script,
    delete: Script,
}

impl RedisBackend {
    /// Connects to `url` (`redis://host:port/db`), giving up after `timeout`.
    pub async fn connect(url: &str, timeout: Duration) -> Result<Self, BackendError> {
        let client = redis::Client::open(url)
            .map_err(|e| BackendError::failed(format!("opening {url}"), e))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(500));
        let connection =
            tokio::time::timeout(timeout, ConnectionManager::new_with_config(client, config))
                .await
                .map_err(|_| {
                    BackendError::Unavailable(format!("{url}: no answer within {timeout:?}"))
                })?
                .map_err(|e| BackendError::failed(format!("connecting to {url}"), e))?;
        Ok(Self {
            connection,
            put: Script::new(&format!("{ACCOUNTING}{PUT}")),
            delete: Script::new(&format!("{ACCOUNTING}{DELETE}")),
        })
    }

    /// The connection, for other users of the same server (locks).
    pub fn connection(&self) -> ConnectionManager {
        self.connection.clone()
    }

    fn accounting_keys(namespace: &str) -> [String; 2] {
        [format!("{namespace}#keys"), format!("{namespace}#sizes")]
    }
}

/// The error of a Redis call doing `what`.
fn failed(what: &'static str) -> impl FnOnce(redis::RedisError) -> BackendError {
    move |err| BackendError::failed(format!("redis: {what}"), err)
}

#[async_trait]
impl CacheBackend for RedisBackend {
    fn kind(&self) -> &'static str {
        "redis"
    }

    async fn get(&self, key: &str) -> Result<Option<Bytes>, BackendError> {
        let mut conn = self.connection.clone();
        let value: Option<Vec<u8>> = conn.get(key).await.map_err(failed("GET"))?;
        Ok(value.map(Bytes::from))
    }

    async fn put(&self, put: Put<'_>) -> Result<PutOutcome, BackendError> {
        let [index, sizes] = Self::accounting_keys(put.namespace);
        let mode = match put.mode {
            PutMode::Overwrite => "set",
            PutMode::IfAbsent => "add",
        };
        let ttl_ms = u64::try_from(put.ttl.as_millis())
            .unwrap_or(u64::MAX)
            .max(1);
        let mut conn = self.connection.clone();
        let outcome: i64 = self
            .put
            .key(put.key)
            .key(index)
            .key(sizes)
            .arg(put.value.as_ref())
            .arg(ttl_ms)
            .arg(mode)
            .arg(put.quota.max_keys)
            .arg(put.quota.max_bytes)
            .invoke_async(&mut conn)
            .await
            .map_err(failed("put script"))?;
        match outcome {
            0 => Ok(PutOutcome::Present),
            1 => Ok(PutOutcome::Stored),
            _ => Ok(PutOutcome::OverQuota),
        }
    }

    async fn delete(&self, namespace: &str, key: &str) -> Result<bool, BackendError> {
        let [index, sizes] = Self::accounting_keys(namespace);
        let mut conn = self.connection.clone();
        let removed: i64 = self
            .delete
            .key(key)
            .key(index)
            .key(sizes)
            .invoke_async(&mut conn)
            .await
            .map_err(failed("delete script"))?;
        Ok(removed > 0)
    }

    async fn ping(&self) -> Result<(), BackendError> {
        let mut conn = self.connection.clone();
        redis::cmd("PING")
            .query_async::<String>(&mut conn)
            .await
            .map(drop)
            .map_err(failed("PING"))
    }
}
