//! The background task that publishes this gateway's in-process routes and keeps the
//! connection: connect (with back-off), publish everything, then follow changes, ping
//! every second, re-publish every `resync_every`; on a lost connection start over. It
//! also publishes the viewer events this gateway reports to other nodes (`peer`);
//! those queued while Redis is away go out once it answers again.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use ::redis::aio::MultiplexedConnection;
use ::redis::{AsyncConnectionConfig, RedisError, Value};
use dashmap::DashMap;
use tokio::sync::mpsc;
use tokio::time::{interval_at, Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use super::state::{connection_lost, Inner};
use super::{peer, value};
use crate::events::ViewerEvent;
use crate::route::{Route, TokenKey};

/// Bound on connecting and on each command of the task.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(3);
/// How often the connection is checked.
const PING_EVERY: Duration = Duration::from_secs(1);
const RETRY_MIN: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(2);
/// Commands per pipeline.
const CHUNK: usize = 512;
/// Changes applied together.
const BATCH: usize = 256;

/// Publishes a one-shot entry unless its used mark exists. KEYS: entry, mark; ARGV:
/// value, lifetime ms. Returns 0 when the token was used already.
const PUBLISH_ONCE: &str = r"
if redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
";

/// One write.
enum Item {
    Publish(TokenKey, Route),
    Remove(TokenKey),
}

/// Why a connection's loop ended.
enum End {
    Stop,
    Lost(RedisError),
}

/// What the task is handed: changed routes, and viewer events for other nodes.
pub(super) struct Queues {
    pub(super) changes: mpsc::Receiver<TokenKey>,
    pub(super) events: Option<mpsc::Receiver<ViewerEvent>>,
}

pub(super) struct Publisher {
    inner: Arc<Inner>,
    routes: Arc<DashMap<TokenKey, Route>>,
    ops: mpsc::Receiver<TokenKey>,
    /// Viewer events for the nodes owning the routes (only with the secret).
    events: Option<mpsc::Receiver<ViewerEvent>>,
    client: ::redis::Client,
    stop: CancellationToken,
    resync_every: Duration,
    shown: String,
    /// Keys this gateway published and has not removed.
    published: HashSet<TokenKey>,
}

impl Publisher {
    pub(super) fn new(
        inner: Arc<Inner>,
        routes: Arc<DashMap<TokenKey, Route>>,
        queues: Queues,
        client: ::redis::Client,
        stop: CancellationToken,
        resync_every: Duration,
        shown: String,
    ) -> Self {
        Self {
            inner,
            routes,
            ops: queues.changes,
            events: queues.events,
            client,
            stop,
            resync_every,
            shown,
            published: HashSet::new(),
        }
    }

    pub(super) async fn run(mut self) {
        let mut backoff = RETRY_MIN;
        let mut reported_down = false;
        loop {
            let config = AsyncConnectionConfig::new()
                .set_connection_timeout(Some(COMMAND_TIMEOUT))
                .set_response_timeout(Some(COMMAND_TIMEOUT));
            let connected = tokio::select! {
                _ = self.stop.cancelled() => return,
                c = self.client.get_multiplexed_async_connection_with_config(&config) => c,
            };
            match connected {
                Ok(conn) => {
                    backoff = RETRY_MIN;
                    reported_down = false;
                    self.inner.conn.store(Some(Arc::new(conn.clone())));
                    tracing::info!(registry = %self.shown, "token registry connected");
                    let end = self.follow(conn).await;
                    self.inner.conn.store(None);
                    match end {
                        End::Stop => return,
                        End::Lost(e) => {
                            tracing::warn!(registry = %self.shown, error = %e, "token registry connection lost; reconnecting")
                        }
                    }
                }
                Err(e) => {
                    if reported_down {
                        tracing::debug!(registry = %self.shown, error = %e, "token registry still unreachable");
                    } else {
                        tracing::warn!(registry = %self.shown, error = %e, "token registry unreachable; retrying");
                        reported_down = true;
                    }
                    // A lookup that found no connection cuts the wait short (after
                    // the shortest one): Redis may be back.
                    let again = Instant::now() + backoff;
                    tokio::select! {
                        _ = self.stop.cancelled() => return,
                        _ = tokio::time::sleep(RETRY_MIN) => {}
                    }
                    tokio::select! {
                        _ = self.stop.cancelled() => return,
                        _ = tokio::time::sleep_until(again) => {}
                        _ = self.inner.suspect.notified() => {}
                    }
                    backoff = (backoff * 2).min(RETRY_MAX);
                }
            }
        }
    }

    /// Serves one connection until it breaks or the registry stops.
    async fn follow(&mut self, mut conn: MultiplexedConnection) -> End {
        // Whatever was queued is covered by the full publication.
        while self.ops.try_recv().is_ok() {}
        self.inner
            .resync
            .store(false, std::sync::atomic::Ordering::Relaxed);
        if let Err(e) = self.publish_all(&mut conn).await {
            if connection_lost(&e) {
                return End::Lost(e);
            }
            tracing::warn!(registry = %self.shown, error = %e, "token registry refused the publication");
        }
        let now = Instant::now();
        let mut resync = interval_at(now + self.resync_every, self.resync_every);
        resync.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut ping = interval_at(now + PING_EVERY, PING_EVERY);
        ping.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            let step = tokio::select! {
                _ = self.stop.cancelled() => return End::Stop,
                Some(first) = self.ops.recv() => {
                    let mut keys = vec![first];
                    while keys.len() < BATCH {
                        match self.ops.try_recv() {
                            Ok(k) => keys.push(k),
                            Err(_) => break,
                        }
                    }
                    self.publish_changes(&mut conn, keys).await
                }
                _ = self.inner.wake.notified() => {
                    if self.inner.resync.swap(false, std::sync::atomic::Ordering::Relaxed) {
                        self.publish_all(&mut conn).await
                    } else {
                        Ok(())
                    }
                }
                Some(event) = next_event(&mut self.events) => self.publish_event(&mut conn, &event).await,
                _ = resync.tick() => self.publish_all(&mut conn).await,
                _ = ping.tick() => ping_once(&mut conn).await,
                _ = self.inner.suspect.notified() => ping_once(&mut conn).await,
            };
            if let Err(e) = step {
                if connection_lost(&e) {
                    return End::Lost(e);
                }
                tracing::warn!(registry = %self.shown, error = %e, "token registry refused a write");
            }
        }
    }

    /// Tells the other nodes of a viewer of one of their routes.
    async fn publish_event(
        &self,
        conn: &mut MultiplexedConnection,
        event: &ViewerEvent,
    ) -> Result<(), RedisError> {
        let Some(seal) = &self.inner.seal else {
            return Ok(());
        };
        let message = peer::encode(event, &self.inner.node, seal, SystemTime::now());
        let receivers: i64 = ::redis::cmd("PUBLISH")
            .arg(self.inner.events_channel())
            .arg(message)
            .query_async(conn)
            .await?;
        tracing::debug!(session = %event.label, change = ?event.change, receivers, "viewer event published for its node");
        Ok(())
    }

    /// Publishes the current state of each changed key.
    async fn publish_changes(
        &mut self,
        conn: &mut MultiplexedConnection,
        mut keys: Vec<TokenKey>,
    ) -> Result<(), RedisError> {
        keys.sort_unstable_by_key(|k| *k.as_bytes());
        keys.dedup();
        let items = keys
            .into_iter()
            .map(|key| match self.routes.get(&key) {
                Some(route) => Item::Publish(key, route.clone()),
                None => Item::Remove(key),
            })
            .collect();
        self.write(conn, items).await
    }

    /// Publishes every in-process route and removes what this gateway published before
    /// and no longer has.
    async fn publish_all(&mut self, conn: &mut MultiplexedConnection) -> Result<(), RedisError> {
        let current: Vec<(TokenKey, Route)> = self
            .routes
            .iter()
            .map(|e| (*e.key(), e.value().clone()))
            .collect();
        let live: HashSet<TokenKey> = current.iter().map(|(k, _)| *k).collect();
        let stale: Vec<Item> = self
            .published
            .difference(&live)
            .map(|k| Item::Remove(*k))
            .collect();
        let (routes, removed) = (current.len(), stale.len());
        let mut items: Vec<Item> = current
            .into_iter()
            .map(|(k, r)| Item::Publish(k, r))
            .collect();
        items.extend(stale);
        self.write(conn, items).await?;
        tracing::debug!(routes, removed, "token registry: routes published");
        Ok(())
    }

    async fn write(
        &mut self,
        conn: &mut MultiplexedConnection,
        items: Vec<Item>,
    ) -> Result<(), RedisError> {
        let mut unpublishable = 0usize;
        let now = SystemTime::now();
        let mut items = items.into_iter().peekable();
        while items.peek().is_some() {
            let mut pipe = ::redis::pipe();
            // What each command was, to read its answer.
            let mut sent: Vec<(TokenKey, bool, bool)> = Vec::with_capacity(CHUNK);
            for item in items.by_ref().take(CHUNK) {
                match item {
                    Item::Publish(key, route) => match self.entry(&key, &route, now) {
                        Some((text, ms)) if route.one_shot => {
                            pipe.cmd("EVAL")
                                .arg(PUBLISH_ONCE)
                                .arg(2)
                                .arg(self.inner.darts_key(&key))
                                .arg(self.inner.used_key(&key))
                                .arg(text)
                                .arg(ms);
                            sent.push((key, true, true));
                        }
                        Some((text, ms)) => {
                            pipe.cmd("SET")
                                .arg(self.inner.darts_key(&key))
                                .arg(text)
                                .arg("PX")
                                .arg(ms);
                            sent.push((key, true, false));
                        }
                        None => {
                            if !route.expired(now) {
                                unpublishable += 1;
                            }
                            pipe.cmd("DEL").arg(self.inner.darts_key(&key));
                            sent.push((key, false, false));
                        }
                    },
                    Item::Remove(key) => {
                        pipe.cmd("DEL").arg(self.inner.darts_key(&key));
                        sent.push((key, false, false));
                    }
                }
            }
            let answers: Vec<Value> = pipe.query_async(conn).await?;
            for ((key, publish, guarded), answer) in sent.into_iter().zip(answers) {
                if guarded && matches!(answer, Value::Int(0)) {
                    // Used through another gateway: gone here too.
                    self.routes.remove(&key);
                    self.published.remove(&key);
                    tracing::info!(key = ?key, "one-shot token used through another gateway");
                } else if publish {
                    self.published.insert(key);
                } else {
                    self.published.remove(&key);
                }
            }
        }
        if unpublishable > 0 {
            tracing::warn!(
                routes = unpublishable,
                "token registry: routes with a VNC password are not published without token_redis_key"
            );
        }
        Ok(())
    }

    /// The value and lifetime (ms) of a route's entry; `None` if it must not be there.
    fn entry(&self, key: &TokenKey, route: &Route, now: SystemTime) -> Option<(String, u64)> {
        let lease = self.inner.lease;
        let life = match route.expires_at {
            Some(at) => at.duration_since(now).ok()?.min(lease),
            None => lease,
        };
        let ms = u64::try_from(life.as_millis()).ok().filter(|ms| *ms > 0)?;
        match value::encode(key, route, self.inner.seal.as_ref()) {
            Ok(text) => Some((text, ms)),
            Err(e) => {
                tracing::debug!(key = ?key, error = %e, "route not published");
                None
            }
        }
    }
}

/// The next queued viewer event; never, without a queue.
async fn next_event(events: &mut Option<mpsc::Receiver<ViewerEvent>>) -> Option<ViewerEvent> {
    match events {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

async fn ping_once(conn: &mut MultiplexedConnection) -> Result<(), RedisError> {
    ::redis::cmd("PING").query_async::<()>(conn).await
}
