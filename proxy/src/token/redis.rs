//! The shared token registry on Redis: several gateways behind one load balancer route
//! every session's token, whichever gateway holds the session.
//!
//! Keys (`NS:` is the namespace prefix, empty without one):
//! - `NS:sha256:HEX` — darts' own entries, under the token's SHA-256 digest. Redis never
//!   holds a darts token in clear; the value (`value`) carries the route with its VNC
//!   password sealed (`seal`).
//! - `NS:TOKEN` — websockify's `TokenRedis` key, read for entries written by
//!   websockify-era tooling (`{"host": "h:p"}` or `h:p`). A token that itself starts with
//!   `sha256:` is never looked up this way, and a darts entry found there is ignored, so a
//!   digest read from Redis never opens anything.
//! - `NS:darts-used:sha256:HEX` — marks a one-shot token as used.
//! - `NS:darts-viewer-events` — a pub/sub channel: viewers of one node's routes carried
//!   by another gateway (`peer`, `subscriber`).
//!
//! With the secret (`token_redis_key`, always set for `darts serve`) the registry is
//! authenticated: every field of darts' entries is covered by a tag (`value`, `auth`),
//! websockify's plain-token keys are not read at all, and an entry that fails the check
//! gets "unknown token" and a log line. Without it (`darts proxy --token-plugin
//! TokenRedis` alone) Redis is trusted, as websockify does.
//!
//! darts never writes plain-token keys: the session manager keeps only digests, so no
//! gateway has the token to write one after the link was minted.
//!
//! Lookups (`TokenMap::lookup_shared`): the gateway's own map first, without Redis; only
//! an unknown token is asked of Redis, with one `MGET` of both keys, bounded in time
//! (`lookup_timeout`) and in concurrency (`max_lookups`, beyond which the answer is
//! "busy"). With Redis unreachable an unknown token gets "unavailable" at once while
//! known tokens keep working. Nothing is cached: a route removed on one gateway stops
//! working everywhere with the next connection. After the websocket upgrade nothing here
//! is involved.
//!
//! One-shot tokens: Redis is the authority. A one-shot route is consumed by a script
//! that takes the entry (`GETDEL`) and leaves the used mark, atomically, so two gateways
//! cannot both accept it; the publishing gateway consumes its own routes the same way
//! and accepts one alone only when Redis cannot be reached.
//!
//! Writes never block a caller: `TokenMap` hands the digest of each changed route to a
//! background task over a bounded queue (a full queue asks for a full re-publication
//! instead). The task keeps the set of keys it published, re-publishes everything after
//! each (re)connection (a restarted Redis may have lost everything) and every
//! `resync_every`, and publishes each entry with a lease of three such periods (or the
//! route's expiry, if sooner): entries of a gateway that died vanish by themselves.
//! A ping every second notices a lost connection; reconnection is retried with a
//! back-off of up to two seconds, cut short by a lookup that found no connection. So a
//! restarted Redis is refilled, and used again, within a few seconds.
//!
//! The connection is one multiplexed connection the task owns and lends to lookups,
//! rather than the crate's `ConnectionManager`: the task must know when a reconnection
//! happened, because that is when everything must be published again.

mod auth;
pub mod peer;
mod publisher;
pub mod seal;
pub mod source;
mod state;
mod subscriber;
pub mod value;

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwapOption;
use dashmap::DashMap;
use tokio::sync::{mpsc, Notify, Semaphore};
use tokio_util::sync::{CancellationToken, DropGuard};

pub use seal::{SealError, SealKey};
pub use source::{RedisSource, SourceError};
pub use value::ValueError;

use crate::events::{ViewerEvent, ViewerEvents};
use crate::route::{Route, TokenKey};
use state::Inner;

/// How often everything is published again.
pub const DEFAULT_RESYNC: Duration = Duration::from_secs(30);
/// Bound on one registry lookup.
pub const DEFAULT_LOOKUP_TIMEOUT: Duration = Duration::from_secs(1);
/// Registry lookups in flight at once; more are answered "busy".
pub const DEFAULT_MAX_LOOKUPS: usize = 64;
/// Changed routes queued for publication; past that, a full re-publication.
const QUEUE: usize = 4096;
/// Longer tokens are not looked up (darts' are 43 characters).
const MAX_TOKEN_LEN: usize = 512;
/// Viewer events for other nodes queued for publication; past that, dropped.
const EVENT_QUEUE: usize = 1024;

/// What a registry needs to run.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct RegistryConfig {
    /// The Redis server and key namespace.
    pub source: RedisSource,
    /// The secret shared by the gateways (`token_redis_key`): without it, routes with a
    /// VNC password are neither published nor read.
    pub seal: Option<SealKey>,
    /// This gateway's VNC client certificate, for x509 routes read from the registry.
    pub x509_client: Option<Arc<rustls::ClientConfig>>,
    /// Where viewer events other gateways report about this node's routes go (darts
    /// serve's session manager); needs `seal`. None: not listened for.
    pub peer_events: Option<ViewerEvents>,
    /// How often every route is published again; also sets the entries' lease (three
    /// periods, at least 10 s). At least one second.
    pub resync_every: Duration,
    /// Bound on one registry lookup.
    pub lookup_timeout: Duration,
    /// Registry lookups in flight at once (at least one); more are answered "busy".
    pub max_lookups: usize,
}

impl RegistryConfig {
    /// A registry on `source` with no secret, no x509 client, no peer events and the
    /// default timings.
    pub fn new(source: RedisSource) -> Self {
        Self {
            source,
            seal: None,
            x509_client: None,
            peer_events: None,
            resync_every: DEFAULT_RESYNC,
            lookup_timeout: DEFAULT_LOOKUP_TIMEOUT,
            max_lookups: DEFAULT_MAX_LOOKUPS,
        }
    }
}

/// The VNC client certificate a gateway uses for x509 routes read from the registry,
/// from the `client/` directory `darts certs init` writes (`ca-cert.pem`,
/// `client-cert.pem`, `client-key.pem`).
pub fn x509_client_from_dir(
    client_dir: &Path,
) -> Result<Arc<rustls::ClientConfig>, crate::error::TlsError> {
    let paths = crate::tls::CertPaths {
        cert: client_dir.join("client-cert.pem"),
        key: Some(client_dir.join("client-key.pem")),
    };
    crate::tls::client_config(&client_dir.join("ca-cert.pem"), Some(&paths))
}

/// Starting a registry failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RegistryError {
    /// Called outside a tokio runtime: the publishing task has nowhere to run.
    #[error("the token registry must be started inside a tokio runtime")]
    NoRuntime,
    /// Setting up the registry's client failed.
    #[error("token registry {registry}: {message}")]
    Client {
        /// The source, as displayed (never its password).
        registry: String,
        /// What failed.
        message: String,
    },
}

/// The answer of the registry for a token this gateway does not know.
#[derive(Debug)]
pub(crate) enum Remote {
    Found(Route),
    Expired,
    Unknown,
    /// Unreachable, too slow, or this gateway cannot use the entry.
    Unavailable,
    /// Too many lookups in flight.
    Busy,
}

/// Why an entry found in the registry cannot be used.
#[derive(Debug, Clone, Copy)]
enum Unusable {
    /// This gateway lacks the secret or the client certificate: "unavailable".
    HereOnly,
    /// Malformed or tampered with: "unknown token".
    Entry,
}

impl From<Unusable> for Remote {
    fn from(u: Unusable) -> Self {
        match u {
            Unusable::HereOnly => Self::Unavailable,
            Unusable::Entry => Self::Unknown,
        }
    }
}

/// Who gets a one-shot route this gateway published.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Consumed {
    Won,
    /// Used through another gateway.
    Lost,
    /// Redis did not answer: the local map decides.
    Unreachable,
}

/// The registry's part of a `TokenMap`: stops its task when dropped.
pub(crate) struct Registry {
    inner: Arc<Inner>,
    ops: mpsc::Sender<TokenKey>,
    /// Viewer events for the nodes owning the routes (only with the secret).
    owner_events: Option<mpsc::Sender<ViewerEvent>>,
    _stop: DropGuard,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("prefix", &self.inner.prefix)
            .field("connected", &self.inner.conn.load().is_some())
            .finish_non_exhaustive()
    }
}

impl Registry {
    /// Spawns the publishing task on the current tokio runtime; it publishes `routes`
    /// (the map's in-process routes) as soon as Redis answers.
    pub(crate) fn start(
        config: RegistryConfig,
        routes: Arc<DashMap<TokenKey, Route>>,
    ) -> Result<Self, RegistryError> {
        let runtime =
            tokio::runtime::Handle::try_current().map_err(|_| RegistryError::NoRuntime)?;
        let shown = config.source.to_string();
        let client = ::redis::Client::open(config.source.connection_info()).map_err(|e| {
            RegistryError::Client {
                registry: shown.clone(),
                message: e.to_string(),
            }
        })?;
        let resync_every = config.resync_every.max(Duration::from_secs(1));
        let inner = Arc::new(Inner {
            prefix: config.source.key_prefix(),
            seal: config.seal,
            x509_client: config.x509_client,
            conn: ArcSwapOption::empty(),
            lookups: Semaphore::new(config.max_lookups.max(1)),
            lookup_timeout: config.lookup_timeout,
            lease: (resync_every * 3).max(Duration::from_secs(10)),
            resync: AtomicBool::new(false),
            wake: Notify::new(),
            suspect: Notify::new(),
            node: node_id().map_err(|message| RegistryError::Client {
                registry: shown.clone(),
                message,
            })?,
        });
        let (tx, rx) = mpsc::channel(QUEUE);
        let (owner_events, events_rx) = match &inner.seal {
            Some(_) => {
                let (etx, erx) = mpsc::channel(EVENT_QUEUE);
                (Some(etx), Some(erx))
            }
            None => (None, None),
        };
        let stop = CancellationToken::new();
        if let (Some(sink), Some(seal)) = (config.peer_events, inner.seal.clone()) {
            let listener = subscriber::Subscriber {
                client: client.clone(),
                channel: inner.events_channel(),
                seal,
                node: inner.node.clone(),
                sink,
                stop: stop.clone(),
                shown: shown.clone(),
            };
            runtime.spawn(listener.run());
        }
        let task = publisher::Publisher::new(
            inner.clone(),
            routes,
            publisher::Queues {
                changes: rx,
                events: events_rx,
            },
            client,
            stop.clone(),
            resync_every,
            shown,
        );
        runtime.spawn(task.run());
        Ok(Self {
            inner,
            ops: tx,
            owner_events,
            _stop: stop.drop_guard(),
        })
    }

    /// The route under `key` changed (added, replaced or removed). Never blocks.
    pub(crate) fn changed(&self, key: TokenKey) {
        if self.ops.try_send(key).is_err() {
            self.inner.resync.store(true, Ordering::Relaxed);
            self.inner.wake.notify_one();
        }
    }

    /// The queue of viewer events for the nodes owning the routes (with the secret).
    pub(crate) fn owner_events(&self) -> Option<mpsc::Sender<ViewerEvent>> {
        self.owner_events.clone()
    }

    /// Whether Redis answered the last time the task checked.
    pub(crate) fn connected(&self) -> bool {
        self.inner.conn.load().is_some()
    }

    /// Takes a one-shot route this gateway holds: Redis decides who uses it.
    pub(crate) async fn consume_own(&self, key: &TokenKey) -> Consumed {
        match self.inner.consume(key).await {
            Some(Some(_)) => Consumed::Won,
            Some(None) => Consumed::Lost,
            None => Consumed::Unreachable,
        }
    }

    /// Asks Redis for a token this gateway does not know.
    pub(crate) async fn fetch(&self, token: &str, key: &TokenKey) -> Remote {
        if token.is_empty() || token.len() > MAX_TOKEN_LEN {
            return Remote::Unknown;
        }
        let Ok(_permit) = self.inner.lookups.try_acquire() else {
            return Remote::Busy;
        };
        let Some(mut conn) = self.inner.connection() else {
            self.inner.suspect.notify_one();
            return Remote::Unavailable;
        };
        let mut keys = vec![self.inner.darts_key(key)];
        // websockify's keys are written without the secret: never believed by an
        // authenticated registry.
        if self.inner.seal.is_none() && !token.starts_with("sha256:") {
            keys.push(format!("{}{token}", self.inner.prefix));
        }
        let query = ::redis::cmd("MGET").arg(&keys).to_owned();
        let values: Vec<Option<String>> = match tokio::time::timeout(
            self.inner.lookup_timeout,
            query.query_async(&mut conn),
        )
        .await
        {
            Ok(Ok(v)) => v,
            Ok(Err(e)) => {
                tracing::warn!(key = ?key, error = %e, "token registry lookup failed");
                self.inner.suspect.notify_one();
                return Remote::Unavailable;
            }
            Err(_) => {
                tracing::warn!(key = ?key, timeout = ?self.inner.lookup_timeout, "token registry lookup timed out");
                self.inner.suspect.notify_one();
                return Remote::Unavailable;
            }
        };
        let mut values = values.into_iter();
        if let Some(Some(darts)) = values.next() {
            return self.darts_entry(key, &darts).await;
        }
        match values.next().flatten() {
            Some(plain) => match value::parse_websockify(&plain) {
                Ok(target) => {
                    tracing::debug!(key = ?key, %target, "token found in the registry (websockify entry)");
                    Remote::Found(Route::new(target))
                }
                Err(e) => {
                    tracing::warn!(key = ?key, error = %e, "token registry entry ignored");
                    Remote::Unknown
                }
            },
            None => Remote::Unknown,
        }
    }

    async fn darts_entry(&self, key: &TokenKey, text: &str) -> Remote {
        let route = match self.decode(key, text) {
            Ok(r) => r,
            Err(why) => return why.into(),
        };
        if route.expired(SystemTime::now()) {
            return Remote::Expired;
        }
        if !route.one_shot {
            tracing::debug!(key = ?key, label = route.label.as_deref().unwrap_or(""), "token found in the registry");
            return Remote::Found(route);
        }
        match self.inner.consume(key).await {
            Some(Some(taken)) if !taken.is_empty() => match self.decode(key, &taken) {
                Ok(route) => Remote::Found(route),
                Err(why) => why.into(),
            },
            // Gone between the read and the consumption, or used elsewhere.
            Some(_) => Remote::Unknown,
            None => Remote::Unavailable,
        }
    }

    /// The entry's route, or why it cannot be used (logged).
    fn decode(&self, key: &TokenKey, text: &str) -> Result<Route, Unusable> {
        value::decode(key, text, self.inner.read_context()).map_err(|e| {
            if e.is_configuration() {
                tracing::warn!(key = ?key, error = %e, "token registry entry cannot be used by this gateway");
                Unusable::HereOnly
            } else {
                tracing::warn!(key = ?key, error = %e, "token registry entry refused");
                Unusable::Entry
            }
        })
    }
}

/// A random name for this registry instance (16 hex digits).
fn node_id() -> Result<String, String> {
    use ring::rand::SecureRandom;
    let mut id = [0u8; 8];
    ring::rand::SystemRandom::new()
        .fill(&mut id)
        .map_err(|_| "the system random generator failed".to_owned())?;
    Ok(id.iter().map(|b| format!("{b:02x}")).collect())
}
