//! Real reverse proxies for tests: Debian's apache2 and nginx, started in the foreground on
//! a free loopback port with their own configuration, logs, pid file and runtime files in
//! a scratch directory (the packages' own daemons and /etc are never used). Stopped on
//! drop. Both connect to their backends from 127.0.0.2 (`ProxySourceAddress`,
//! `proxy_bind`), so that a backend can tell the proxy (127.0.0.2) from the browser
//! (127.0.0.1).
//!
//! Declared from a test file with `#[path = "support/web_proxies.rs"] mod web_proxies;`
//! after `mod support;`. Needs `bash tests/setup.sh proxies`.
#![allow(dead_code, clippy::unwrap_used)]

use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::free_port;

/// The address the proxies connect to their backends from.
pub const PROXY_SOURCE: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
const MODULES: &str = "/usr/lib/apache2/modules";
const SETUP_HINT: &str = "install them with `bash tests/setup.sh proxies`";

/// A running proxy: its port on 127.0.0.1 and its scratch directory.
pub struct WebProxy {
    pub name: &'static str,
    pub port: u16,
    pub dir: PathBuf,
    child: Child,
}

impl WebProxy {
    pub fn addr(&self) -> SocketAddr {
        ([127, 0, 0, 1], self.port).into()
    }

    /// The proxy's error log so far.
    pub fn error_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("error.log")).unwrap_or_default()
    }

    /// The proxy's access log so far.
    pub fn access_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("access.log")).unwrap_or_default()
    }

    /// Both logs, for failure messages.
    pub fn logs(&self) -> String {
        format!(
            "--- {} error log\n{}\n--- {} access log\n{}",
            self.name,
            self.error_log(),
            self.name,
            self.access_log()
        )
    }

    fn spawn(name: &'static str, mut cmd: Command, port: u16, dir: PathBuf) -> Self {
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::from(
                std::fs::File::create(dir.join("stdout.log")).unwrap(),
            ))
            .stderr(Stdio::from(
                std::fs::File::create(dir.join("stderr.log")).unwrap(),
            ))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}; {SETUP_HINT}"));
        let mut p = Self {
            name,
            port,
            dir,
            child,
        };
        p.wait_listening();
        p
    }

    /// Waits until the port accepts connections; panics with the logs if the proxy exits.
    fn wait_listening(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let exited = self.child.try_wait().ok().flatten().is_some();
            if !exited && TcpStream::connect(self.addr()).is_ok() {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "{} exited with {status} before listening:\n{}\n{}",
                    self.name,
                    std::fs::read_to_string(self.dir.join("stderr.log")).unwrap_or_default(),
                    self.logs()
                );
            }
            assert!(
                Instant::now() < deadline,
                "{} did not listen on {} within 20 s:\n{}",
                self.name,
                self.addr(),
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for WebProxy {
    fn drop(&mut self) {
        // TERM lets apache2's parent stop its children; then make sure.
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn program(path: &str) -> PathBuf {
    let p = PathBuf::from(path);
    assert!(p.is_file(), "{path} is missing: {SETUP_HINT}");
    p
}

/// Runs `apache2` with `site` (directives for the main server) after a minimal base
/// configuration: event MPM, the modules darts' block needs (proxy, proxy_http,
/// proxy_wstunnel, rewrite, headers, alias, ssl), a document root with an `index.html`
/// that says "site root", and `ProxySourceAddress 127.0.0.2`.
pub fn apache(scratch: &Path, site: &str) -> WebProxy {
    let bin = program("/usr/sbin/apache2");
    let dir = scratch.join("apache2");
    let docs = dir.join("htdocs");
    std::fs::create_dir_all(&docs).unwrap();
    std::fs::write(docs.join("index.html"), "site root\n").unwrap();
    let port = free_port();
    let user = if rustix::process::geteuid().is_root() {
        // The children drop root, as in a real installation.
        "User nobody\nGroup nogroup\n"
    } else {
        ""
    };
    let modules = [
        ("mpm_event", "mod_mpm_event"),
        ("authz_core", "mod_authz_core"),
        ("mime", "mod_mime"),
        ("dir", "mod_dir"),
        ("alias", "mod_alias"),
        ("headers", "mod_headers"),
        ("rewrite", "mod_rewrite"),
        ("proxy", "mod_proxy"),
        ("proxy_http", "mod_proxy_http"),
        ("proxy_wstunnel", "mod_proxy_wstunnel"),
        ("socache_shmcb", "mod_socache_shmcb"),
        ("ssl", "mod_ssl"),
    ]
    .iter()
    .map(|(name, file)| format!("LoadModule {name}_module {MODULES}/{file}.so\n"))
    .collect::<String>();
    let conf = dir.join("apache2.conf");
    std::fs::write(
        &conf,
        format!(
            r#"ServerRoot "{d}"
ServerName darts.test
{modules}{user}PidFile "{d}/apache2.pid"
DefaultRuntimeDir "{d}"
Mutex file:{d} default
ErrorLog "{d}/error.log"
LogLevel warn proxy:info proxy_http:info proxy_wstunnel:info ssl:warn
LogFormat "%a \"%r\" %>s" short
CustomLog "{d}/access.log" short
Listen 127.0.0.1:{port}
TypesConfig /etc/mime.types
DocumentRoot "{d}/htdocs"
DirectoryIndex index.html
StartServers 1
ServerLimit 1
ThreadsPerChild 25
MaxRequestWorkers 25
ProxySourceAddress {src}

{site}
"#,
            d = dir.display(),
            src = PROXY_SOURCE,
        ),
    )
    .unwrap();
    let check = Command::new(&bin)
        .arg("-t")
        .arg("-f")
        .arg(&conf)
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "apache2 -t refused the configuration:\n{}",
        String::from_utf8_lossy(&check.stderr)
    );
    let mut cmd = Command::new(bin);
    cmd.arg("-f").arg(&conf).arg("-DFOREGROUND");
    WebProxy::spawn("apache2", cmd, port, dir)
}

/// Runs `nginx` in the foreground (one process) with `http_server` inside the `server`
/// block of its HTTP listener, and `stream` (may be empty) inside a `stream` block.
/// `{stream_port}` in `stream` is replaced by a second free port, returned.
pub fn nginx(scratch: &Path, http_server: &str, stream: &str) -> (WebProxy, u16) {
    let bin = program("/usr/sbin/nginx");
    let dir = scratch.join("nginx");
    let docs = dir.join("htdocs");
    std::fs::create_dir_all(&docs).unwrap();
    std::fs::write(docs.join("index.html"), "site root\n").unwrap();
    let port = free_port();
    let stream_port = free_port();
    let stream_block = if stream.is_empty() {
        String::new()
    } else {
        let module = "/usr/lib/nginx/modules/ngx_stream_module.so";
        assert!(
            Path::new(module).is_file(),
            "{module} is missing: {SETUP_HINT}"
        );
        format!(
            "stream {{\n{}\n}}\n",
            stream.replace("{stream_port}", &stream_port.to_string())
        )
    };
    let load = if stream.is_empty() {
        String::new()
    } else {
        "load_module /usr/lib/nginx/modules/ngx_stream_module.so;\n".to_owned()
    };
    let conf = dir.join("nginx.conf");
    std::fs::write(
        &conf,
        format!(
            r#"{load}daemon off;
master_process off;
pid {d}/nginx.pid;
error_log {d}/error.log info;
events {{ worker_connections 256; }}
http {{
    access_log {d}/access.log;
    client_body_temp_path {d}/client_body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    proxy_bind {src};
    server {{
        listen 127.0.0.1:{port};
        server_name darts.test;
        root {d}/htdocs;
{http_server}
    }}
}}
{stream_block}"#,
            d = dir.display(),
            src = PROXY_SOURCE,
        ),
    )
    .unwrap();
    let check = Command::new(&bin)
        .arg("-t")
        .arg("-p")
        .arg(&dir)
        .arg("-c")
        .arg(&conf)
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "nginx -t refused the configuration:\n{}",
        String::from_utf8_lossy(&check.stderr)
    );
    let mut cmd = Command::new(bin);
    cmd.arg("-p").arg(&dir).arg("-c").arg(&conf);
    (WebProxy::spawn("nginx", cmd, port, dir), stream_port)
}
