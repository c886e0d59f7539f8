//! The command line. `darts proxy` takes websockify's arguments, so an operator can put
//! it in websockify's place without changing anything else, plus darts' own options.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "darts",
    version,
    about = "Remote QEMU desktops in the browser, through a fast websocket-to-VNC gateway"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Websocket-to-VNC gateway, a drop-in replacement for websockify.
    #[command(
        after_help = "Examples:\n  darts proxy --web /usr/share/novnc --token-plugin TokenFile --token-source /etc/darts/tokens 6080\n  darts proxy --cert cert.pem --key key.pem 0.0.0.0:443 127.0.0.1:5901\n  darts proxy --unix-target /run/vnc.sock 127.0.0.1:6080"
    )]
    Proxy(Box<ProxyArgs>),
    /// Certificates for VNC over TLS between darts and QEMU (VeNCrypt x509).
    #[command(subcommand)]
    Certs(CertsCommand),
    /// Run the service: pages, sessions and VMs on one port (options: darts config keys).
    #[command(after_long_help = crate::config::keys::serve_help())]
    Serve(crate::sessions_cmd::ServeArgs),
    /// Start a session on the running service, without authentication; prints its link.
    Start(crate::sessions_cmd::StartArgs),
    /// Stop a session, or all of them.
    Stop(crate::sessions_cmd::StopArgs),
    /// The catalogue and the running sessions.
    Status(crate::sessions_cmd::StatusArgs),
    /// Stop every session (the original's service_purge).
    Purge(crate::sessions_cmd::ConfigArgs),
    /// The configuration: check, show (with origins), import the original's config.pl, keys.
    #[command(subcommand)]
    Config(crate::config_cmd::ConfigCommand),
    /// The machine catalogue: list, enable, disable, download, purge (qwdctl's commands).
    Machines(crate::catalogue::command::MachinesArgs),
    /// Prepare this host for GPU pass-through (IOMMU, vfio-pci, udev, memlock); prints
    /// the changes unless --apply.
    Gpu(GpuArgs),
    /// Check this host for darts: QEMU, KVM, files, directories, certificates, port,
    /// authentication servers, GPUs; one line each, with the fix. Fails if any check fails.
    Doctor(crate::doctor::DoctorArgs),
}

#[derive(Debug, Args)]
pub struct GpuArgs {
    /// Devices to give to virtual machines, by PCI id (default: every GPU but the boot display).
    #[arg(
        value_name = "VENDOR:MODEL,...",
        value_delimiter = ',',
        conflicts_with = "undo"
    )]
    pub ids: Vec<String>,
    /// Write the files, then (when --root is /) run update-initramfs, update-grub, udevadm, systemctl.
    #[arg(long)]
    pub apply: bool,
    /// Remove the set-up (the memlock limits stay).
    #[arg(long)]
    pub undo: bool,
    /// Root of the file system to prepare.
    #[arg(long, value_name = "DIR", default_value = "/")]
    pub root: PathBuf,
    /// Do not ask before applying.
    #[arg(short, long)]
    pub yes: bool,
}

#[derive(Debug, Subcommand)]
pub enum CertsCommand {
    /// Create a CA, a server certificate for QEMU and a client certificate for darts.
    Init(CertsInitArgs),
}

#[derive(Debug, Args)]
pub struct CertsInitArgs {
    /// Directory to create (DIR/ca, DIR/server for QEMU's tls-creds-x509 dir=, DIR/client for darts).
    pub dir: PathBuf,
    /// Name or address of the VNC server, for its certificate (repeatable; default localhost and 127.0.0.1).
    #[arg(long)]
    pub server_name: Vec<String>,
    /// Common name of darts' client certificate.
    #[arg(long, default_value = "darts")]
    pub client_name: String,
    /// Validity in days.
    #[arg(long, default_value_t = 825)]
    pub days: i64,
    /// Also write an empty certificate revocation list (ca-crl.pem).
    #[arg(long)]
    pub crl: bool,
    /// Replace an existing CA.
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Clone, Copy, Default, ValueEnum)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

#[derive(Debug, Args)]
pub struct ProxyArgs {
    /// Where to listen: [SOURCE_ADDR:]PORT (all interfaces when no address is given).
    #[arg(value_name = "[SOURCE_ADDR:]PORT", value_parser = parse_listen)]
    pub listen: SocketAddr,

    /// Single target for every connection: TARGET_ADDR:PORT.
    #[arg(value_name = "TARGET_ADDR:PORT")]
    pub target: Option<String>,

    /// PEM certificate chain (may also hold the key). Enables TLS on the same port.
    #[arg(long, value_name = "FILE")]
    pub cert: Option<PathBuf>,

    /// PEM private key, if not in --cert.
    #[arg(long, value_name = "FILE", requires = "cert")]
    pub key: Option<PathBuf>,

    /// Refuse plain (non-TLS) connections.
    #[arg(long, requires = "cert")]
    pub ssl_only: bool,

    /// Serve static files (noVNC) from this directory.
    #[arg(long, value_name = "DIR")]
    pub web: Option<PathBuf>,

    /// websockify token plugin: TokenFile or ReadOnlyTokenFile (both re-read changed files),
    /// or TokenRedis (a Redis shared with other gateways).
    #[arg(long, value_name = "CLASS", requires = "token_source")]
    pub token_plugin: Option<String>,

    /// Token file, or directory of token files, with lines "token: host:port" or
    /// "token: unix_socket:/path". With TokenRedis: host[:port[:db[:password[:namespace]]]]
    /// or a redis://, rediss://, redis+unix:// URL.
    #[arg(long, value_name = "FILE_OR_DIR")]
    pub token_source: Option<PathBuf>,

    /// With TokenRedis: file with the secret darts gateways share (darts serve's
    /// token_redis_key), to use the VNC passwords of darts' entries.
    #[arg(long, value_name = "FILE", requires = "token_source")]
    pub token_redis_key: Option<PathBuf>,

    /// With TokenRedis: the client/ directory of darts certs init, whose certificate
    /// answers entries that use VNC over TLS (x509).
    #[arg(long, value_name = "DIR", requires = "token_source")]
    pub token_redis_x509_dir: Option<PathBuf>,

    /// Deprecated websockify alias of --token-plugin TokenFile --token-source FILE.
    #[arg(long, value_name = "FILE", conflicts_with = "token_source")]
    pub target_config: Option<PathBuf>,

    /// Single unix-socket target for every connection.
    #[arg(long, value_name = "PATH", conflicts_with = "target")]
    pub unix_target: Option<PathBuf>,

    /// Use the Host header (without port) as the token.
    #[arg(long)]
    pub host_token: bool,

    /// Close a session after S seconds without traffic in either direction.
    /// (websockify uses this name for stopping the whole server when idle.)
    #[arg(long, value_name = "S")]
    pub idle_timeout: Option<f64>,

    /// Ping the browser every S seconds; close sessions that stop answering.
    #[arg(long, value_name = "S")]
    pub heartbeat: Option<f64>,

    /// Accepted for websockify compatibility; darts never lists directories.
    #[arg(long)]
    pub file_only: bool,

    /// More log output (debug level).
    #[arg(short, long)]
    pub verbose: bool,

    /// URL path prefix for static files, /healthz and /metrics, e.g. /darts.
    #[arg(long, value_name = "PATH", default_value = "/")]
    pub web_prefix: String,

    /// Origin allowed besides the page's own host (repeatable; * allows any).
    #[arg(long = "allowed-origin", value_name = "ORIGIN")]
    pub allowed_origins: Vec<String>,

    /// Most client connections held at once; more get HTTP 503.
    #[arg(long, value_name = "N", default_value_t = darts_proxy::config::DEFAULT_MAX_CONNECTIONS)]
    pub max_connections: usize,

    /// Most pending connections (not yet a session with a valid token) one client
    /// address (IPv6: one /64) may hold; a newer one pushes out the oldest (0: no limit).
    #[arg(long, value_name = "N", default_value_t = darts_proxy::config::DEFAULT_MAX_CONNECTIONS_PER_IP)]
    pub max_connections_per_ip: usize,

    /// Most sessions one token may hold at once; more get HTTP 429 (0: no limit).
    #[arg(long, value_name = "N", default_value_t = darts_proxy::config::DEFAULT_MAX_VIEWERS_PER_TOKEN)]
    pub max_viewers_per_token: usize,

    /// Seconds a client has for TLS and the HTTP request.
    #[arg(long, value_name = "S", default_value_t = 10.0)]
    pub handshake_timeout: f64,

    /// Seconds to reach the VNC target.
    #[arg(long, value_name = "S", default_value_t = 5.0)]
    pub connect_timeout: f64,

    /// Seconds sessions get to close on SIGTERM before they are dropped.
    #[arg(long, value_name = "S", default_value_t = 10.0)]
    pub grace_period: f64,

    /// Largest websocket frame accepted from a browser, in bytes.
    #[arg(long, value_name = "BYTES", default_value_t = darts_proxy::config::DEFAULT_MAX_FRAME)]
    pub max_frame_size: u64,

    /// Largest (fragmented) websocket message accepted from a browser, in bytes.
    #[arg(long, value_name = "BYTES", default_value_t = darts_proxy::config::DEFAULT_MAX_MESSAGE)]
    pub max_message_size: u64,

    /// Largest read from either side, in bytes (and so the largest frame sent).
    #[arg(long, value_name = "BYTES", default_value_t = darts_proxy::config::DEFAULT_READ_CHUNK)]
    pub read_chunk: usize,

    /// Relay any TCP protocol: do not check that targets speak RFB (VNC) first.
    #[arg(long)]
    pub raw: bool,

    /// Copy target → browser bytes through user space instead of splicing them
    /// (zero-copy, plain TCP/unix sockets without TLS or view-only filtering).
    #[arg(long)]
    pub no_splice: bool,

    /// Do not serve /healthz and /metrics.
    #[arg(long)]
    pub no_metrics: bool,

    /// Log format.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

/// `PORT`, `ADDR:PORT`, `[V6]:PORT` or `HOST:PORT`.
pub fn parse_listen(s: &str) -> Result<SocketAddr, String> {
    if let Ok(port) = s.parse::<u16>() {
        return Ok(SocketAddr::from(([0, 0, 0, 0], port)));
    }
    if let Ok(addr) = s.parse::<SocketAddr>() {
        return Ok(addr);
    }
    s.to_socket_addrs()
        .map_err(|e| format!("{s}: {e}"))?
        .next()
        .ok_or_else(|| format!("{s}: no address"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_forms() {
        assert_eq!(
            parse_listen("6080").unwrap(),
            "0.0.0.0:6080".parse().unwrap()
        );
        assert_eq!(
            parse_listen("127.0.0.1:6080").unwrap(),
            "127.0.0.1:6080".parse().unwrap()
        );
        assert_eq!(
            parse_listen("[::1]:6080").unwrap(),
            "[::1]:6080".parse().unwrap()
        );
        assert!(parse_listen("localhost:6080").unwrap().ip().is_loopback());
        assert!(parse_listen("nope").is_err());
    }

    #[test]
    fn accepts_websockify_command_lines() {
        let cli = Cli::try_parse_from([
            "darts",
            "proxy",
            "--web",
            "/usr/share/novnc",
            "--token-plugin",
            "TokenFile",
            "--token-source",
            "/tmp/t",
            "--heartbeat",
            "30",
            "127.0.0.1:6080",
        ])
        .unwrap();
        let Command::Proxy(a) = cli.command else {
            panic!("proxy")
        };
        assert_eq!(a.token_source.unwrap(), PathBuf::from("/tmp/t"));
        assert_eq!(a.heartbeat, Some(30.0));
        let cli = Cli::try_parse_from([
            "darts",
            "proxy",
            "--cert",
            "c.pem",
            "--ssl-only",
            "6080",
            "localhost:5901",
        ])
        .unwrap();
        let Command::Proxy(a) = cli.command else {
            panic!("proxy")
        };
        assert_eq!(a.target.as_deref(), Some("localhost:5901"));
        assert!(
            Cli::try_parse_from(["darts", "proxy", "--ssl-only", "6080"]).is_err(),
            "--ssl-only needs --cert"
        );
    }
}
