//! Token routing: which target a websocket's `?token=` leads to.
//!
//! Two kinds of entries share one lookup: routes added in process (`TokenMap::insert`,
//! used by the session manager, with an expiry and a one-shot flag) and routes read from
//! websockify-style token files (`file::TokenFileSource`). Tokens are never stored or
//! logged in clear: the map is keyed by their SHA-256 digest and digests are compared in
//! constant time, so timing can reveal at most a prefix of a digest, which says nothing
//! about any token.
//!
//! With a shared registry (`with_registry`, `redis::RegistryConfig`), in-process routes
//! are also published in Redis and tokens this gateway does not know are looked up there
//! (`lookup_shared`), so gateways behind one load balancer route each other's sessions.

pub mod file;
pub mod redis;

use std::sync::Arc;
use std::time::SystemTime;

use dashmap::DashMap;

use self::redis::{Consumed, Registry, RegistryConfig, RegistryError, Remote};
use crate::events::{RouteOrigin, ViewerEvent};
pub use crate::route::{Route, TokenKey};
pub use file::TokenFileSource;

/// The answer to a token lookup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// The token's route (a one-shot one now consumed).
    Found(Route),
    /// The token's route has expired.
    Expired,
    /// No route has this token (or a one-shot one was already used).
    Unknown,
    /// Not known here and the shared registry did not answer (unreachable, too slow, or
    /// its entry needs what this gateway lacks). Only from `lookup_shared`.
    Unavailable,
    /// Not known here and too many registry lookups are in flight. Only from
    /// `lookup_shared`.
    Busy,
}

impl From<Remote> for Lookup {
    fn from(r: Remote) -> Self {
        match r {
            Remote::Found(route) => Self::Found(route),
            Remote::Expired => Self::Expired,
            Remote::Unknown => Self::Unknown,
            Remote::Unavailable => Self::Unavailable,
            Remote::Busy => Self::Busy,
        }
    }
}

/// All routes the gateway knows: in-process entries first, then token files, then the
/// shared registry if there is one.
#[derive(Debug, Default)]
pub struct TokenMap {
    /// Shared with the registry's publishing task.
    routes: Arc<DashMap<TokenKey, Route>>,
    files: Vec<TokenFileSource>,
    registry: Option<Registry>,
}

impl TokenMap {
    /// An empty map: no routes, no files, no registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a websockify token file or directory as a source (already read by `open`),
    /// and starts following its changes in the background.
    pub fn with_file_source(mut self, source: TokenFileSource) -> Self {
        if let Err(e) = source.watch() {
            tracing::warn!(error = %e, "token files will not follow changes");
        }
        self.files.push(source);
        self
    }

    /// Shares this map's routes through a Redis registry and looks unknown tokens up
    /// there (`lookup_shared`). Spawns the publishing task, so it must be called inside a
    /// tokio runtime; Redis need not be up yet (routes are published once it answers).
    pub fn with_registry(mut self, config: RegistryConfig) -> Result<Self, RegistryError> {
        self.registry = Some(Registry::start(config, self.routes.clone())?);
        Ok(self)
    }

    /// Whether a shared registry is set, and whether it is connected now.
    pub fn registry_connected(&self) -> Option<bool> {
        self.registry.as_ref().map(Registry::connected)
    }

    /// Where viewer events for other nodes' routes go (the registry's queue), if they can
    /// be reported (a registry with its secret).
    pub(crate) fn owner_events(&self) -> Option<tokio::sync::mpsc::Sender<ViewerEvent>> {
        self.registry.as_ref().and_then(Registry::owner_events)
    }

    /// Tells the registry (if any) that the route under `key` changed.
    fn changed(&self, key: TokenKey) {
        if let Some(r) = &self.registry {
            r.changed(key);
        }
    }

    /// Adds or replaces the route for `token`.
    pub fn insert(&self, token: &str, route: Route) {
        self.insert_key(TokenKey::of(token), route);
    }

    /// Adds or replaces a route under a digest kept from an earlier `TokenKey::of`.
    pub fn insert_key(&self, key: TokenKey, route: Route) {
        self.routes.insert(key, route);
        self.changed(key);
    }

    /// Replaces the route under `key` only if one is there (a used one-shot token stays
    /// gone); true if it was replaced.
    pub fn replace_key(&self, key: TokenKey, route: Route) -> bool {
        let replaced = match self.routes.get_mut(&key) {
            Some(mut entry) => {
                *entry = route;
                true
            }
            None => false,
        };
        if replaced {
            self.changed(key);
        }
        replaced
    }

    /// Removes an in-process route; true if it existed.
    pub fn remove(&self, token: &str) -> bool {
        let key = TokenKey::of(token);
        let removed = self.routes.remove(&key).is_some();
        if removed {
            self.changed(key);
        }
        removed
    }

    /// Removes every in-process route whose label is `label` (all tokens of one session).
    pub fn remove_label(&self, label: &str) -> usize {
        self.remove_where(|r| r.label.as_deref() == Some(label))
    }

    /// Removes the in-process routes `doomed` picks; returns how many.
    fn remove_where(&self, doomed: impl Fn(&Route) -> bool) -> usize {
        let mut removed = Vec::new();
        self.routes.retain(|k, r| {
            let gone = doomed(r);
            if gone {
                removed.push(*k);
            }
            !gone
        });
        for key in &removed {
            self.changed(*key);
        }
        removed.len()
    }

    /// Finds the route for `token`. A one-shot route is consumed; an expired one removed.
    pub fn lookup(&self, token: &str) -> Lookup {
        let key = TokenKey::of(token);
        let now = SystemTime::now();
        if let Some(entry) = self.routes.get(&key) {
            let (expired, one_shot) = (entry.expired(now), entry.one_shot);
            let route = entry.clone();
            drop(entry);
            if expired {
                if self.routes.remove(&key).is_some() {
                    self.changed(key);
                }
                return Lookup::Expired;
            }
            if one_shot {
                // Only the caller that actually removes it may use it: two racing
                // connections with the same one-shot token cannot both win.
                return match self.routes.remove(&key) {
                    Some((_, r)) => {
                        self.changed(key);
                        Lookup::Found(r)
                    }
                    None => Lookup::Unknown,
                };
            }
            return Lookup::Found(route);
        }
        self.lookup_files(&key)
    }

    fn lookup_files(&self, key: &TokenKey) -> Lookup {
        for source in &self.files {
            if let Some(route) = source.lookup(key) {
                return Lookup::Found(route);
            }
        }
        Lookup::Unknown
    }

    /// `lookup`, with the shared registry: a one-shot route is consumed in Redis (so no
    /// other gateway can use it too; the local map decides only when Redis cannot be
    /// reached), and a token unknown here is looked up in Redis. Without a registry,
    /// exactly `lookup`. Known tokens other than one-shot ones never wait on Redis.
    pub async fn lookup_shared(&self, token: &str) -> Lookup {
        self.lookup_shared_from(token).await.0
    }

    /// `lookup_shared`, and where the route came from: this gateway's own, or another
    /// node's read from the registry.
    pub async fn lookup_shared_from(&self, token: &str) -> (Lookup, RouteOrigin) {
        let Some(registry) = &self.registry else {
            return (self.lookup(token), RouteOrigin::Own);
        };
        let key = TokenKey::of(token);
        let now = SystemTime::now();
        let local = self
            .routes
            .get(&key)
            .map(|entry| (entry.expired(now), entry.one_shot, entry.clone()));
        let own = |lookup| (lookup, RouteOrigin::Own);
        match local {
            Some((false, false, route)) => return own(Lookup::Found(route)),
            Some((true, _, _)) => {
                if self.routes.remove(&key).is_some() {
                    self.changed(key);
                }
                return own(Lookup::Expired);
            }
            Some((false, true, _)) => {
                let Some((_, route)) = self.routes.remove(&key) else {
                    return own(Lookup::Unknown);
                };
                let verdict = registry.consume_own(&key).await;
                self.changed(key);
                return own(match verdict {
                    Consumed::Won => Lookup::Found(route),
                    Consumed::Unreachable => {
                        tracing::info!(key = ?key, "one-shot token accepted without the registry (unreachable)");
                        Lookup::Found(route)
                    }
                    Consumed::Lost => {
                        tracing::info!(key = ?key, "one-shot token already used through another gateway");
                        Lookup::Unknown
                    }
                });
            }
            None => {}
        }
        match self.lookup_files(&key) {
            Lookup::Unknown => (
                registry.fetch(token, &key).await.into(),
                RouteOrigin::Registry,
            ),
            found => own(found),
        }
    }

    /// Drops expired in-process routes; returns how many.
    pub fn purge_expired(&self) -> usize {
        let now = SystemTime::now();
        self.remove_where(|r| r.expired(now))
    }

    /// Re-reads every token file that changed on disk.
    pub fn refresh_files(&self) {
        for source in &self.files {
            source.refresh(true);
        }
    }

    /// Number of in-process routes.
    pub fn len(&self) -> usize {
        self.routes.len()
    }

    /// No in-process routes (token files and the registry are not counted).
    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }
}

/// Replaces the value of every `token` query parameter with `***` for logging.
pub fn redact_query(path_and_query: &str) -> String {
    let Some((path, query)) = path_and_query.split_once('?') else {
        return path_and_query.to_owned();
    };
    let redacted: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((k, _)) if k.eq_ignore_ascii_case("token") || k.eq_ignore_ascii_case("path") => {
                format!("{k}=***")
            }
            _ => pair.to_owned(),
        })
        .collect();
    format!("{path}?{}", redacted.join("&"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::target::Target;
    use std::time::Duration;

    fn tcp(port: u16) -> Target {
        Target::Tcp {
            host: "127.0.0.1".into(),
            port,
        }
    }

    #[test]
    fn insert_lookup_remove() {
        let map = TokenMap::new();
        map.insert("abc", Route::new(tcp(1)));
        assert_eq!(map.lookup("abc"), Lookup::Found(Route::new(tcp(1))));
        assert_eq!(map.lookup("abd"), Lookup::Unknown);
        assert!(map.remove("abc"));
        assert_eq!(map.lookup("abc"), Lookup::Unknown);
    }

    #[test]
    fn one_shot_routes_are_used_once() {
        let map = TokenMap::new();
        map.insert("once", Route::new(tcp(2)).one_shot(true));
        assert!(matches!(map.lookup("once"), Lookup::Found(_)));
        assert_eq!(map.lookup("once"), Lookup::Unknown);
    }

    #[test]
    fn expired_routes_are_refused_and_purged() {
        let map = TokenMap::new();
        let past = SystemTime::now() - Duration::from_secs(1);
        map.insert("old", Route::new(tcp(3)).expires_at(past));
        map.insert("old2", Route::new(tcp(3)).expires_at(past));
        map.insert(
            "new",
            Route::new(tcp(3)).expires_at(SystemTime::now() + Duration::from_secs(60)),
        );
        assert_eq!(map.lookup("old"), Lookup::Expired);
        assert_eq!(map.purge_expired(), 1);
        assert!(matches!(map.lookup("new"), Lookup::Found(_)));
    }

    #[test]
    fn remove_by_label_drops_every_token_of_a_session() {
        let map = TokenMap::new();
        map.insert("a", Route::new(tcp(4)).label("s1"));
        map.insert("b", Route::new(tcp(4)).label("s1"));
        map.insert("c", Route::new(tcp(4)).label("s2"));
        assert_eq!(map.remove_label("s1"), 2);
        assert_eq!(map.len(), 1);
    }

    #[test]
    fn keys_hide_tokens() {
        let key = TokenKey::of("secret-token");
        assert!(!format!("{key:?}").contains("secret"));
        assert_eq!(key.to_hex().len(), 64);
        assert_eq!(TokenKey::of("x"), TokenKey::of("x"));
        assert_ne!(TokenKey::of("x"), TokenKey::of("y"));
    }

    #[test]
    fn redaction_hides_token_values() {
        assert_eq!(
            redact_query("/websockify?token=s3cret"),
            "/websockify?token=***"
        );
        assert_eq!(
            redact_query("/vnc.html?a=1&path=?token=x&TOKEN=y"),
            "/vnc.html?a=1&path=***&TOKEN=***"
        );
        assert_eq!(redact_query("/plain"), "/plain");
    }
}
