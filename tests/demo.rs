//! The README's first command, `bash scripts/demo.sh`: it must give a newcomer a live
//! desktop. Runs the script as a user would (with this build's darts rather than a
//! release build, and the demo machine), follows its link through the websocket to the
//! guest's screen, then stops it with SIGTERM, as Ctrl-C would, and checks nothing is
//! left running.

#[path = "support/qemu.rs"]
mod qemu;
#[path = "support/service.rs"]
mod service;
mod support;

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::*;

#[tokio::test(flavor = "multi_thread")]
async fn the_demo_script_gives_a_live_desktop_and_cleans_up() {
    let scratch = Scratch::new("demo-script");
    let port = free_port();
    let mut child = Command::new("bash")
        .arg(qemu::repo_path("scripts/demo.sh"))
        .env("DARTS_DEMO_PORT", port.to_string())
        .env("DARTS_DEMO_DIR", &scratch.0)
        // This build's darts: a release build here would compete with the other tests.
        .env("DARTS_BIN", darts_bin())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .process_group(0)
        .spawn()
        .unwrap();
    // Read the script's output until it prints the link.
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(600);
    let mut output = String::new();
    let url = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => {
                output.push_str(&line);
                output.push('\n');
                if let Some(u) = line.trim().strip_prefix("url") {
                    break u.trim().to_owned();
                }
            }
            Err(_) => panic!("the demo printed no link; output:\n{output}"),
        }
    };
    assert!(
        url.starts_with(&format!(
            "http://127.0.0.1:{port}/darts/vnc.html?resize=remote&autoconnect=true&path=?token="
        )),
        "{url}"
    );
    let token = url.rsplit_once("token=").unwrap().1;
    let ws = ws_connect(
        &format!("ws://127.0.0.1:{port}/darts/vnc.html?token={token}"),
        &[],
    )
    .await
    .expect("the demo's link routes");
    let mut rfb = qemu::RfbOverWs::new(ws, Duration::from_secs(20));
    let init = rfb.handshake().await;
    assert!(init.width >= 320, "desktop {}x{}", init.width, init.height);
    rfb.set_raw_rgb32().await;
    assert!(rfb.full_frame(20).await.bytes > 0);
    drop(rfb);

    // Ctrl-C (here SIGTERM to the script): the session and darts stop.
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "the demo did not stop");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        service::pids_mentioning(&scratch.0).is_empty(),
        "processes left: {:?}",
        service::pids_mentioning(&scratch.0)
    );
}
