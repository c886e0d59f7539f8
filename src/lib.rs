//! darts: QEMU desktops in the browser. This crate is the composition root: command
//! line, logging, signals and process limits, wired to the gateway in `darts-proxy`.

#![cfg_attr(not(test), warn(clippy::unwrap_used))]

pub mod certs;
pub mod cli;
pub mod config;
pub mod proxy_cmd;
pub mod qmp;
pub mod rlimit;
pub mod signals;
pub mod telemetry;

/// Runs the command the user asked for.
pub fn run(cli: cli::Cli) -> anyhow::Result<()> {
    match cli.command {
        cli::Command::Proxy(args) => {
            telemetry::init(args.verbose, args.log_format);
            rlimit::raise_nofile();
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            runtime.block_on(proxy_cmd::run(*args))
        }
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
                println!("{}", path.display());
            }
            Ok(())
        }
    }
}
