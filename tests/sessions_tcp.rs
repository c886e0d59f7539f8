//! Sessions whose VNC server listens on TCP (`qemu_vnc_listen`) with VeNCrypt x509,
//! behind `darts serve` with real QEMU (TCG): ports from `service_port_vnc`'s range, the
//! guest's screen through the websocket, QEMU offering VeNCrypt only to a plain client,
//! re-adoption after `kill -9` of darts, and the port freed by a stop.
//!
//! Needs qemu-system-x86_64 and the test guest (`bash tests/setup.sh`).

#[path = "support/qemu.rs"]
mod qemu;
#[path = "support/service.rs"]
mod service;
mod support;

use std::net::SocketAddr;

use service::{certs_init, screen_lit, Service};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Two consecutive loopback ports at or above 7000 that nobody holds right now.
fn free_port_pair() -> u16 {
    for _ in 0..500 {
        let first = 7000 + (rand_u64() % 20000) as u16;
        let held: Vec<_> = (first..=first + 1)
            .filter_map(|p| std::net::TcpListener::bind(("127.0.0.1", p)).ok())
            .collect();
        if held.len() == 2 {
            return first;
        }
    }
    panic!("no two free consecutive ports");
}

/// The VNC endpoint a session's record holds.
fn recorded_vnc(svc: &Service, name: &str) -> SocketAddr {
    let path = svc.scratch.0.join(format!("state/{name}.json"));
    let record: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert!(
        record.get("vnc_socket").is_none(),
        "a TCP session has no unix socket: {record}"
    );
    record["vnc_tcp"]
        .as_str()
        .unwrap_or_else(|| panic!("no vnc_tcp in {record}"))
        .parse()
        .unwrap()
}

/// QEMU's command line for a session, one argument per item.
fn qemu_args(svc: &Service, name: &str) -> Vec<String> {
    let pids = service::pids_mentioning(&svc.scratch.0.join("snapshots").join(name));
    assert_eq!(pids.len(), 1, "one QEMU for {name}");
    std::fs::read(format!("/proc/{}/cmdline", pids[0]))
        .unwrap()
        .split(|b| *b == 0)
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect()
}

/// The security types QEMU offers a plain RFB 3.8 client on `addr`.
async fn offered_security(addr: SocketAddr) -> Vec<u8> {
    let mut raw = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut version = [0u8; 12];
    raw.read_exact(&mut version).await.unwrap();
    assert_eq!(&version, b"RFB 003.008\n");
    raw.write_all(b"RFB 003.008\n").await.unwrap();
    let n = raw.read_u8().await.unwrap() as usize;
    let mut types = vec![0u8; n];
    raw.read_exact(&mut types).await.unwrap();
    types
}

#[tokio::test(flavor = "multi_thread")]
async fn tcp_sessions_take_ports_from_the_range_survive_a_restart_and_free_them() {
    let certs = certs_init("sessions-tcp-certs", &[]);
    // A range of exactly two ports: two sessions fill it.
    let first = free_port_pair();
    let range = first..=first + 1;
    let mut svc = Service::start(
        "sessions-tcp",
        &format!(
            "qemu_vnc_listen = \"127.0.0.1\"\nqemu_vnc_security = \"x509\"\n\
             qemu_vnc_x509_dir = \"{}\"\nservice_port_vnc = {first}\nservice_max_session_nb = 2\n\
             service_max_session_nb_per_user = 2",
            certs.0.display()
        ),
    );
    let check = svc.cli(&["config", "check"]);
    assert!(
        check.status.success(),
        "{}{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );

    let a = svc.start_session(&[]);
    let b = svc.start_session(&[]);
    let (va, vb) = (recorded_vnc(&svc, &a.name), recorded_vnc(&svc, &b.name));
    assert_ne!(va.port(), vb.port(), "one port per session");
    for v in [va, vb] {
        assert_eq!(v.ip().to_string(), "127.0.0.1");
        assert!(range.contains(&v.port()), "{v} outside {range:?}");
    }
    // QEMU listens on the address and display of the record, with x509 and a password.
    let args = qemu_args(&svc, &a.name);
    let vnc = args.iter().position(|x| x == "-vnc").expect("-vnc given");
    assert_eq!(
        args[vnc + 1],
        format!(
            "127.0.0.1:{},tls-creds=vnctls0,password=on",
            va.port() - 5900
        )
    );
    assert!(!svc
        .scratch
        .0
        .join("snapshots")
        .join(&a.name)
        .join("vnc.sock")
        .exists());

    // A plain RFB client on the port is offered VeNCrypt only (19): no None, no VNC auth.
    assert_eq!(offered_security(va).await, vec![19]);

    // Through darts, the browser side gets the screens.
    let (mut rfb, desktop) = svc.view(&a.token).await;
    assert!(desktop.contains(&a.name), "desktop name {desktop:?}");
    assert!(screen_lit(&mut rfb).await > 100);
    drop(rfb);
    let (mut rfb, desktop) = svc.view(&b.token).await;
    assert!(desktop.contains(&b.name), "desktop name {desktop:?}");
    assert!(rfb.full_frame(20).await.bytes > 0);
    drop(rfb);

    // kill -9 darts: the VMs keep their ports, and a new darts re-adopts them.
    svc.kill_darts();
    assert_eq!(offered_security(va).await, vec![19], "QEMU outlives darts");
    svc.launch();
    let names: Vec<String> = svc
        .sessions()
        .iter()
        .map(|s| s["name"].as_str().unwrap().to_owned())
        .collect();
    assert!(
        names.contains(&a.name) && names.contains(&b.name),
        "not re-adopted: {names:?}\n{}",
        svc.log()
    );
    let (mut rfb, desktop) = svc.view(&a.token).await;
    assert!(desktop.contains(&a.name));
    assert!(screen_lit(&mut rfb).await > 100);
    drop(rfb);

    // Stopping frees the port: nothing answers on it, and the next session takes it (the
    // other port of the range is still b's).
    let out = svc.cli(&["stop", &a.name]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        tokio::net::TcpStream::connect(va).await.is_err(),
        "{va} still answers after the stop"
    );
    let c = svc.start_session(&[]);
    assert_eq!(
        recorded_vnc(&svc, &c.name),
        va,
        "the freed port is taken again"
    );
    let (mut rfb, desktop) = svc.view(&c.token).await;
    assert!(desktop.contains(&c.name));
    assert!(rfb.full_frame(20).await.bytes > 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_range_refuses_with_a_clear_error() {
    let certs = certs_init("sessions-tcp-full-certs", &[]);
    // The range's only port is held by another program.
    let holder = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = holder.local_addr().unwrap().port();
    let svc = Service::start(
        "sessions-tcp-full",
        &format!(
            "qemu_vnc_listen = \"127.0.0.1\"\nqemu_vnc_security = \"x509\"\n\
             qemu_vnc_x509_dir = \"{}\"\nservice_port_vnc = {port}\nservice_max_session_nb = 1",
            certs.0.display()
        ),
    );
    let out = svc.cli(&["start", "demo.img"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains(&format!(
            "no free VNC port in service_port_vnc's range {port}-{port} on 127.0.0.1"
        )),
        "{err}"
    );
    assert!(svc.sessions().is_empty());
    assert!(
        svc.entries("snapshots").is_empty() && svc.entries("state").is_empty(),
        "left {:?} {:?}",
        svc.entries("snapshots"),
        svc.entries("state")
    );
    drop(holder);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_ipv6_listen_address_works_with_a_certificate_for_it() {
    if std::net::TcpListener::bind("[::1]:0").is_err() {
        eprintln!("no IPv6 loopback on this host; nothing to test");
        return;
    }
    let certs = certs_init("sessions-tcp6-certs", &["--server-name", "::1"]);
    let port = std::net::TcpListener::bind("[::1]:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let svc = Service::start(
        "sessions-tcp6",
        &format!(
            "qemu_vnc_listen = \"::1\"\nqemu_vnc_security = \"x509\"\n\
             qemu_vnc_x509_dir = \"{}\"\nservice_port_vnc = {port}\nservice_max_session_nb = 1",
            certs.0.display()
        ),
    );
    let s = svc.start_session(&[]);
    let vnc = recorded_vnc(&svc, &s.name);
    assert_eq!(vnc, SocketAddr::from(([0u16, 0, 0, 0, 0, 0, 0, 1], port)));
    let args = qemu_args(&svc, &s.name);
    let i = args.iter().position(|x| x == "-vnc").unwrap();
    assert!(
        args[i + 1].starts_with(&format!("[::1]:{},", port - 5900)),
        "{}",
        args[i + 1]
    );
    assert_eq!(offered_security(vnc).await, vec![19]);
    // darts checks QEMU's certificate against ::1, which it names.
    let (mut rfb, desktop) = svc.view(&s.token).await;
    assert!(desktop.contains(&s.name));
    assert!(rfb.full_frame(20).await.bytes > 0);
}
