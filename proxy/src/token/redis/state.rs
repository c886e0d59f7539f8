//! The registry's state shared by the lookups and the publishing task: the live Redis
//! connection, the key names, the lookup limits. Below both, so that neither uses the
//! other to reach it.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use ::redis::aio::MultiplexedConnection;
use arc_swap::ArcSwapOption;
use tokio::sync::{Notify, Semaphore};

use super::seal::SealKey;
use super::value::ReadContext;
use crate::route::TokenKey;

/// Takes a one-shot entry and marks it used, atomically. KEYS: entry, mark; ARGV: how
/// long the mark outlives the entry's own expiry, ms. Returns the entry; `""` when there
/// was neither entry nor mark (the caller's own route was not published yet: it wins);
/// nil when the mark says another gateway used it.
const CONSUME: &str = r"
local ttl = redis.call('PTTL', KEYS[1])
local v = redis.call('GETDEL', KEYS[1])
if v then
  if ttl < 0 then ttl = 0 end
  redis.call('SET', KEYS[2], '1', 'PX', ttl + tonumber(ARGV[1]))
  return v
end
if redis.call('EXISTS', KEYS[2]) == 1 then return false end
redis.call('SET', KEYS[2], '1', 'PX', ARGV[1])
return ''
";

/// State shared by the lookups and the publishing task.
pub(super) struct Inner {
    pub(super) prefix: String,
    pub(super) seal: Option<SealKey>,
    pub(super) x509_client: Option<Arc<rustls::ClientConfig>>,
    /// The live connection, `None` while disconnected.
    pub(super) conn: ArcSwapOption<MultiplexedConnection>,
    pub(super) lookups: Semaphore,
    pub(super) lookup_timeout: Duration,
    /// How long an entry lives without being published again.
    pub(super) lease: Duration,
    /// The queue overflowed: publish everything.
    pub(super) resync: AtomicBool,
    pub(super) wake: Notify,
    /// A lookup failed: check the connection now.
    pub(super) suspect: Notify,
    /// Names this registry instance in its viewer events.
    pub(super) node: String,
}

impl Inner {
    pub(super) fn darts_key(&self, key: &TokenKey) -> String {
        format!("{}sha256:{}", self.prefix, key.to_hex())
    }

    pub(super) fn used_key(&self, key: &TokenKey) -> String {
        format!("{}darts-used:sha256:{}", self.prefix, key.to_hex())
    }

    pub(super) fn events_channel(&self) -> String {
        format!("{}darts-viewer-events", self.prefix)
    }

    pub(super) fn lease_ms(&self) -> u64 {
        u64::try_from(self.lease.as_millis()).unwrap_or(u64::MAX)
    }

    pub(super) fn read_context(&self) -> ReadContext<'_> {
        ReadContext {
            seal: self.seal.as_ref(),
            x509_client: self.x509_client.as_ref(),
        }
    }

    pub(super) fn connection(&self) -> Option<MultiplexedConnection> {
        self.conn.load_full().map(|c| (*c).clone())
    }

    /// Runs the consume script; `None` when Redis did not answer in time.
    pub(super) async fn consume(&self, key: &TokenKey) -> Option<Option<String>> {
        let mut conn = self.connection()?;
        let cmd = ::redis::cmd("EVAL")
            .arg(CONSUME)
            .arg(2)
            .arg(self.darts_key(key))
            .arg(self.used_key(key))
            .arg(self.lease_ms())
            .to_owned();
        match tokio::time::timeout(self.lookup_timeout, cmd.query_async(&mut conn)).await {
            Ok(Ok(v)) => Some(v),
            Ok(Err(e)) => {
                tracing::warn!(key = ?key, error = %e, "token registry: one-shot consumption failed");
                self.suspect.notify_one();
                None
            }
            Err(_) => {
                tracing::warn!(key = ?key, "token registry: one-shot consumption timed out");
                self.suspect.notify_one();
                None
            }
        }
    }
}

/// Whether a Redis error means the connection cannot be trusted any more (I/O, timeout,
/// a reply that did not parse) rather than a command Redis answered with an error.
pub(super) fn connection_lost(e: &::redis::RedisError) -> bool {
    use ::redis::ErrorKind;
    !matches!(
        e.kind(),
        ErrorKind::Server(_)
            | ErrorKind::Extension
            | ErrorKind::UnexpectedReturnType
            | ErrorKind::Client
    )
}
