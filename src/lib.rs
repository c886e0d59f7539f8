//! darts: QEMU desktops in the browser. This crate is the composition root: command
//! line, logging, signals and process limits, wired to the gateway in `darts-proxy`.

#![cfg_attr(not(test), warn(clippy::unwrap_used))]
// Output goes through `out` (commands) or `telemetry` (the service): never a panicking macro.
#![cfg_attr(not(test), deny(clippy::print_stdout, clippy::print_stderr))]

#[macro_use]
mod out;

pub mod api;
pub mod audit;
pub mod auth;
pub mod catalogue;
pub mod certs;
pub mod cli;
pub mod config;
pub mod config_cmd;
pub mod control;
pub mod doctor;
pub mod fetch;
pub mod gpu;
pub mod host;
pub mod limits;
pub mod mail;
pub mod net;
pub mod nodes;
pub mod proxy_cmd;
pub mod qmp;
pub mod reload;
pub mod rlimit;
pub mod script;
pub mod serve;
pub mod session;
pub mod sessions_cmd;
pub mod signals;
pub mod telemetry;
pub mod tls_roots;
pub mod vm;

/// Runs the command the user asked for.
pub fn run(cli: cli::Cli) -> anyhow::Result<()> {
    match cli.command {
        cli::Command::Proxy(args) => {
            let _log = telemetry::init(args.verbose, args.log_format);
            rlimit::raise_nofile();
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            runtime.block_on(proxy_cmd::run(*args))
        }
        cli::Command::Gpu(args) => Ok(gpu::setup::command(&gpu::setup::Options {
            ids: args.ids,
            apply: args.apply,
            undo: args.undo,
            root: args.root,
            yes: args.yes,
        })?),
        cli::Command::Machines(args) => catalogue::command::run(args),
        cli::Command::Doctor(args) => doctor::command(args),
        cli::Command::Config(cmd) => config_cmd::run(cmd),
        cli::Command::Serve(args) => {
            let _log = telemetry::init(false, cli::LogFormat::Text);
            rlimit::raise_nofile();
            let runtime = runtime()?;
            let served = runtime.block_on(sessions_cmd::serve(args));
            // Blocking work stuck on a hung disk (a session directory, the catalogue) would
            // hold a plain drop of the runtime for ever: it is left behind instead.
            runtime.shutdown_timeout(BLOCKING_AT_EXIT);
            served
        }
        cli::Command::Start(args) => runtime()?.block_on(sessions_cmd::start(args)),
        cli::Command::Stop(args) => runtime()?.block_on(sessions_cmd::stop(args)),
        cli::Command::Status(args) => runtime()?.block_on(sessions_cmd::status(args)),
        cli::Command::Purge(args) => runtime()?.block_on(sessions_cmd::purge(args)),
        cli::Command::Certs(cli::CertsCommand::Init(args)) => {
            let req = certs::Request {
                dir: args.dir,
                server_names: if args.server_name.is_empty() {
                    vec!["localhost".into(), "127.0.0.1".into()]
                } else {
                    args.server_name
                },
                client_name: args.client_name,
                days: args.days,
                crl: args.crl,
                force: args.force,
            };
            for path in certs::init(&req)? {
                outln!("{}", path.display());
            }
            Ok(())
        }
    }
}

/// How long `darts serve` waits, once stopped, for blocking work still running.
const BLOCKING_AT_EXIT: std::time::Duration = std::time::Duration::from_secs(5);

fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
}
