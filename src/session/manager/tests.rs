use super::*;
use crate::session::record::FORMAT;
use darts_proxy::{RouteOrigin, ViewerChange, ViewerEvent};

/// A manager over scratch directories, holding one running record of `owner` (no VM:
/// only what needs no QEMU is exercised here; tests/sessions.rs has the real thing).
async fn manager_with(
    owner: &str,
    created: u64,
    expires: u64,
) -> (Arc<Manager>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let config = Config {
        dir_cfg: dir.path().join("state"),
        dir_snapshots: dir.path().join("snapshots"),
        snapshot_lifetime: 86400,
        snapshot_lifetime_max: 3 * 86400,
        ..Config::default()
    };
    let mgr = Manager::start(Arc::new(config), Arc::new(TokenMap::new()))
        .await
        .unwrap();
    let record = SessionRecord {
        darts_session: FORMAT,
        name: "darts-aaaaaaaaaaaa".into(),
        phase: Phase::Running,
        user: owner.into(),
        machine: "m.qcow2".into(),
        machine_path: "/m/m.qcow2".into(),
        machine_format: "qcow2".into(),
        cpu: 1,
        view_clipboard: false,
        memory_mb: 512,
        disk_gb: None,
        gpu: None,
        oneshot: false,
        use_master: false,
        created,
        expires,
        pid: None,
        dir: dir.path().join("snapshots/darts-aaaaaaaaaaaa"),
        disk: dir.path().join("snapshots/darts-aaaaaaaaaaaa/disk.qcow2"),
        qmp_socket: "/nonexistent/qmp".into(),
        vnc: crate::vm::VncEndpoint::Unix("/nonexistent/vnc".into()),
        vnc_security: "password".into(),
        vnc_password: "pw".into(),
        tokens: vec![super::super::record::TokenRecord {
            sha256: TokenKey::of("tok").to_hex(),
            view_only: false,
        }],
        remote_host: None,
    };
    mgr.register_routes(&record).await.unwrap();
    lock(&mgr.sessions).insert(record.name.clone(), Live::new(record));
    (mgr, dir)
}

#[tokio::test]
async fn only_the_owner_or_an_administrator_sees_and_extends() {
    let now = super::super::now();
    let (mgr, _dir) = manager_with("alice", now, now + 86400).await;
    let name = "darts-aaaaaaaaaaaa";
    assert_eq!(mgr.list(&Caller::user("alice")).len(), 1);
    assert!(mgr.list(&Caller::user("bob")).is_empty());
    assert_eq!(mgr.list(&Caller::admin("root")).len(), 1);
    assert!(matches!(
        mgr.get(&Caller::user("bob"), name),
        Err(SessionError::Forbidden)
    ));
    assert!(matches!(
        mgr.extend(&Caller::user("bob"), name).await,
        Err(SessionError::Forbidden)
    ));
    assert!(matches!(
        mgr.stop(&Caller::user("bob"), name).await,
        Err(SessionError::Forbidden)
    ));
    assert!(matches!(
        mgr.purge(&Caller::user("alice")).await,
        Err(SessionError::Forbidden)
    ));
    assert!(matches!(
        mgr.get(&Caller::user("alice"), "darts-zzzzzzzzzzzz"),
        Err(SessionError::NotFound)
    ));
    assert_eq!(mgr.get(&Caller::user("alice"), name).unwrap().user, "alice");
}

#[tokio::test]
async fn viewer_events_count_only_for_the_sessions_own_routes() {
    let now = super::super::now();
    let (mgr, _dir) = manager_with("alice", now, now + 86400).await;
    let name = "darts-aaaaaaaaaaaa";
    let (tx, rx) = darts_proxy::ViewerEvents::channel(16);
    tokio::spawn(mgr.clone().follow_viewers(rx));
    let event = |key: TokenKey, origin: RouteOrigin| ViewerEvent {
        label: name.into(),
        key,
        origin,
        change: ViewerChange::Opened,
        one_shot: false,
        view_only: false,
        client: "192.0.2.1:1".parse().unwrap(),
        traffic: None,
    };
    // A label alone (another token), or another node's route read from the
    // registry under the same label: ignored.
    tx.send(event(TokenKey::of("forged"), RouteOrigin::Peer));
    tx.send(event(TokenKey::of("forged"), RouteOrigin::Own));
    tx.send(event(TokenKey::of("tok"), RouteOrigin::Registry));
    // The session's own token, through this gateway or another one: counted.
    tx.send(event(TokenKey::of("tok"), RouteOrigin::Own));
    tx.send(event(TokenKey::of("tok"), RouteOrigin::Peer));
    let viewers = || mgr.get(&Caller::user("alice"), name).unwrap().viewers;
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while viewers() < 2 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(viewers(), 2);
}

fn own_event(change: ViewerChange, one_shot: bool) -> ViewerEvent {
    ViewerEvent {
        label: "darts-aaaaaaaaaaaa".into(),
        key: TokenKey::of("tok"),
        origin: RouteOrigin::Own,
        change,
        one_shot,
        view_only: false,
        client: "192.0.2.1:1".parse().unwrap(),
        traffic: None,
    }
}

#[tokio::test]
async fn dropped_viewer_events_are_resynced_from_the_gateways_ledger() {
    let now = super::super::now();
    let (mgr, _dir) = manager_with("alice", now, now + 86400).await;
    let (tx, rx) = darts_proxy::ViewerEvents::channel(1);
    // Nobody reads yet: one event queued, the other three dropped.
    for change in [ViewerChange::Opened; 3] {
        tx.send(own_event(change, false));
    }
    tx.send(own_event(ViewerChange::Closed, false));
    assert_eq!(tx.dropped(), 3);
    tokio::spawn(mgr.clone().follow_viewers(rx));
    let viewers = || {
        mgr.get(&Caller::user("alice"), "darts-aaaaaaaaaaaa")
            .unwrap()
            .viewers
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while viewers() != 2 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        viewers(),
        2,
        "the ledger's count, not the one event received"
    );
}

#[tokio::test]
async fn a_one_shot_session_whose_close_event_was_dropped_still_ends() {
    let now = super::super::now();
    let (mgr, _dir) = manager_with("alice", now, now + 86400).await;
    let live = lock(&mgr.sessions)["darts-aaaaaaaaaaaa"].clone();
    lock(&live.record).oneshot = true;
    let (tx, rx) = darts_proxy::ViewerEvents::channel(1);
    tx.send(own_event(ViewerChange::Opened, true));
    tx.send(own_event(ViewerChange::Closed, true));
    assert_eq!(tx.dropped(), 1, "the close is lost");
    tokio::spawn(mgr.clone().follow_viewers(rx));
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while lock(&live.stop_wanted).is_none() && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // No monitor runs here: the stop waits for it, as during a creation.
    assert_eq!(*lock(&live.stop_wanted), Some("one-shot connection closed"));
    assert_eq!(live.viewers.load(Ordering::Relaxed), 0);
}

#[tokio::test]
async fn extend_adds_a_day_up_to_the_cap_and_moves_the_token_expiry() {
    let now = super::super::now();
    let (mgr, _dir) = manager_with("alice", now, now + 86400).await;
    let name = "darts-aaaaaaaaaaaa";
    let alice = Caller::user("alice");
    assert_eq!(
        mgr.extend(&alice, name).await.unwrap().expires,
        now + 2 * 86400
    );
    assert_eq!(
        mgr.extend(&alice, name).await.unwrap().expires,
        now + 3 * 86400
    );
    // The cap (snapshot_lifetime_max, 3 days from creation) is reached.
    assert!(matches!(
        mgr.extend(&alice, name).await,
        Err(SessionError::ExtendLimit)
    ));
    // The record on disk follows, and the token's route carries the new expiry.
    let (records, _) = mgr.store.load_all();
    assert_eq!(records[0].expires, now + 3 * 86400);
    match mgr.tokens.lookup("tok") {
        darts_proxy::Lookup::Found(r) => assert_eq!(
            r.expires_at,
            Some(UNIX_EPOCH + Duration::from_secs(now + 3 * 86400))
        ),
        other => panic!("token route {other:?}"),
    }
}

#[tokio::test]
async fn view_only_routes_carry_the_owners_clipboard_choice() {
    let now = super::super::now();
    let (mgr, _dir) = manager_with("alice", now, now + 86400).await;
    let name = "darts-aaaaaaaaaaaa";
    let (_, view) = mgr
        .issue_tokens(&Caller::user("alice"), name)
        .await
        .unwrap();
    let view = view.expect("a view-only token");
    let clipboard = |mgr: &Manager| match mgr.tokens.lookup(&view) {
        darts_proxy::Lookup::Found(v) => v.view_only && v.view_only_clipboard,
        other => panic!("{other:?}"),
    };
    assert!(
        !clipboard(&mgr),
        "view-only viewers get no clipboard by default"
    );
    let (mut records, _) = mgr.store.load_all();
    records[0].view_clipboard = true;
    mgr.update_routes(&records[0]).await.unwrap();
    assert!(clipboard(&mgr));
}

#[tokio::test]
async fn fresh_links_route_to_the_session_and_old_ones_are_capped() {
    let now = super::super::now();
    let (mgr, _dir) = manager_with("alice", now, now + 86400).await;
    let name = "darts-aaaaaaaaaaaa";
    assert!(matches!(
        mgr.issue_tokens(&Caller::user("bob"), name).await,
        Err(SessionError::Forbidden)
    ));
    let (full, view) = mgr
        .issue_tokens(&Caller::user("alice"), name)
        .await
        .unwrap();
    let view = view.expect("a view-only token");
    match (mgr.tokens.lookup(&full), mgr.tokens.lookup(&view)) {
        (darts_proxy::Lookup::Found(f), darts_proxy::Lookup::Found(v)) => {
            assert!(!f.view_only && v.view_only);
            assert_eq!(f.label.as_deref(), Some(name));
        }
        other => panic!("{other:?}"),
    }
    // The first token still works; digests only reach the state file.
    assert!(matches!(
        mgr.tokens.lookup("tok"),
        darts_proxy::Lookup::Found(_)
    ));
    let (records, _) = mgr.store.load_all();
    let text = serde_json::to_string(&records[0]).unwrap();
    assert!(!text.contains(&full) && records[0].tokens.len() == 3);
    // Past the cap, the oldest tokens stop routing.
    for _ in 0..MAX_TOKENS {
        mgr.issue_tokens(&Caller::admin("root"), name)
            .await
            .unwrap();
    }
    assert_eq!(mgr.store.load_all().0[0].tokens.len(), MAX_TOKENS);
    assert!(matches!(
        mgr.tokens.lookup("tok"),
        darts_proxy::Lookup::Unknown
    ));
    assert!(matches!(
        mgr.tokens.lookup(&full),
        darts_proxy::Lookup::Unknown
    ));
    assert_eq!(mgr.tokens.len(), MAX_TOKENS);
}

#[tokio::test]
async fn extending_a_one_shot_session_does_not_revive_its_used_token() {
    let now = super::super::now();
    let (mgr, _dir) = manager_with("alice", now, now + 86400).await;
    let name = "darts-aaaaaaaaaaaa";
    let record = {
        let sessions = lock(&mgr.sessions);
        let mut r = lock(&sessions[name].record);
        r.oneshot = true;
        r.clone()
    };
    mgr.register_routes(&record).await.unwrap();
    assert!(matches!(
        mgr.tokens.lookup("tok"),
        darts_proxy::Lookup::Found(_)
    ));
    assert_eq!(
        mgr.tokens.lookup("tok"),
        darts_proxy::Lookup::Unknown,
        "used once"
    );
    mgr.extend(&Caller::user("alice"), name).await.unwrap();
    assert_eq!(mgr.tokens.lookup("tok"), darts_proxy::Lookup::Unknown);
}

#[test]
fn resource_refusals_ask_for_a_fallback_and_quotas_do_not() {
    let busy = SessionError::Refused(vec![Refusal::TooManySessions { active: 3, max: 3 }]);
    assert!(busy.needs_fallback());
    assert_eq!(busy.code(), "too_many_sessions");
    let quota = SessionError::Refused(vec![Refusal::TooManyUserSessions {
        sessions: 3,
        max: 3,
    }]);
    assert!(!quota.needs_fallback());
    assert!(!SessionError::UnknownMachine("x".into()).needs_fallback());
}
