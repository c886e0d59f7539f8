//! `darts proxy`: turns the command line into a gateway configuration and runs it until
//! SIGTERM or SIGINT; SIGHUP reloads the certificate and token files.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use darts_proxy::tls::CertPaths;
use darts_proxy::token::redis::{self, RedisSource, RegistryConfig, SealKey};
use darts_proxy::{Gateway, GatewayConfig, Target, TokenFileSource, TokenMap};
use tokio_util::sync::CancellationToken;

use crate::cli::ProxyArgs;
use crate::signals;

const TOKEN_PLUGINS: [&str; 3] = ["TokenFile", "ReadOnlyTokenFile", "TokenRedis"];

/// Builds the gateway configuration and token map from the command line.
pub fn configure(args: &ProxyArgs) -> anyhow::Result<(GatewayConfig, TokenMap)> {
    let mut config = GatewayConfig::new(args.listen);
    config.tls = args.cert.clone().map(|cert| CertPaths {
        cert,
        key: args.key.clone(),
    });
    config.ssl_only = args.ssl_only;
    config.web_dir = args.web.clone();
    config.web_prefix = normalize_prefix(&args.web_prefix);
    config.host_token = args.host_token;
    config.allowed_origins = args.allowed_origins.clone();
    config.max_connections = args.max_connections;
    config.max_connections_per_ip = args.max_connections_per_ip;
    config.max_viewers_per_token = args.max_viewers_per_token;
    config.handshake_timeout = seconds("--handshake-timeout", args.handshake_timeout)?;
    config.connect_timeout = seconds("--connect-timeout", args.connect_timeout)?;
    config.grace_period = seconds("--grace-period", args.grace_period)?;
    config.idle_timeout = args
        .idle_timeout
        .map(|s| seconds("--idle-timeout", s))
        .transpose()?;
    config.heartbeat = args
        .heartbeat
        .map(|s| seconds("--heartbeat", s))
        .transpose()?;
    config.max_frame = args.max_frame_size;
    config.max_message = args.max_message_size;
    if args.read_chunk < 1024 || args.read_chunk > 16 * 1024 * 1024 {
        bail!("--read-chunk must be between 1 KiB and 16 MiB");
    }
    config.read_chunk = args.read_chunk;
    config.expose_metrics = !args.no_metrics;
    config.rfb_check = !args.raw;
    config.splice = !args.no_splice;
    config.default_target = match (&args.target, &args.unix_target) {
        (Some(t), _) => Some(
            Target::parse(t).with_context(|| format!("target {t:?} is not TARGET_ADDR:PORT"))?,
        ),
        (None, Some(path)) => Some(Target::Unix(path.clone())),
        (None, None) => None,
    };
    let mut tokens = TokenMap::new();
    let source = match (&args.token_plugin, &args.token_source, &args.target_config) {
        (_, None, Some(file)) => Some(file.clone()),
        (plugin, Some(src), None) => {
            let plugin = plugin.as_deref().unwrap_or("TokenFile");
            let short = plugin.rsplit('.').next().unwrap_or(plugin);
            if !TOKEN_PLUGINS.contains(&short) {
                bail!("token plugin {plugin:?} is not supported; use one of {TOKEN_PLUGINS:?}");
            }
            if short == "TokenRedis" {
                tokens = tokens.with_registry(token_redis(args, src)?)?;
                None
            } else {
                Some(src.clone())
            }
        }
        _ => None,
    };
    if let Some(path) = source {
        if args.token_redis_key.is_some() || args.token_redis_x509_dir.is_some() {
            bail!("--token-redis-key and --token-redis-x509-dir go with --token-plugin TokenRedis");
        }
        tokens = tokens.with_file_source(TokenFileSource::open(&path)?);
    }
    if config.default_target.is_none()
        && args.token_source.is_none()
        && args.target_config.is_none()
    {
        bail!("nothing to route to: give TARGET_ADDR:PORT, --unix-target, or --token-plugin with --token-source");
    }
    Ok((config, tokens))
}

/// Runs the gateway until a stop signal.
pub async fn run(args: ProxyArgs) -> anyhow::Result<()> {
    let (config, tokens) = configure(&args)?;
    if config.tls.is_none() && config.listen.ip().is_unspecified() {
        tracing::warn!("serving plain HTTP on all interfaces; give --cert/--key for TLS");
    }
    let gateway = Gateway::bind(config, Arc::new(tokens)).await?;
    let handle = gateway.handle();
    let stop = CancellationToken::new();
    signals::spawn(stop.clone(), move || {
        handle.reload_tls();
        handle.reload_tokens();
    })?;
    if !gateway.run(stop).await {
        tracing::warn!("some sessions were still open when the grace period ended");
    }
    Ok(())
}

/// `--token-plugin TokenRedis --token-source SRC`: the shared registry's settings.
fn token_redis(args: &ProxyArgs, src: &std::path::Path) -> anyhow::Result<RegistryConfig> {
    let text = src
        .to_str()
        .context("--token-source for TokenRedis is not UTF-8")?;
    let source = RedisSource::parse(text).context("--token-source")?;
    tracing::info!(registry = %source, "shared token registry");
    let mut config = RegistryConfig::new(source);
    if let Some(key) = &args.token_redis_key {
        config.seal = Some(SealKey::from_file(key).context("--token-redis-key")?);
    }
    if let Some(dir) = &args.token_redis_x509_dir {
        config.x509_client =
            Some(redis::x509_client_from_dir(dir).context("--token-redis-x509-dir")?);
    }
    Ok(config)
}

fn seconds(name: &str, s: f64) -> anyhow::Result<Duration> {
    if !(s.is_finite() && s > 0.0 && s < 1e9) {
        bail!("{name} must be a positive number of seconds");
    }
    Ok(Duration::from_secs_f64(s))
}

fn normalize_prefix(p: &str) -> String {
    let trimmed = p.trim().trim_matches('/');
    if trimmed.is_empty() {
        "/".into()
    } else {
        format!("/{trimmed}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_are_normalized() {
        assert_eq!(normalize_prefix("/"), "/");
        assert_eq!(normalize_prefix("darts/"), "/darts");
        assert_eq!(normalize_prefix("/darts"), "/darts");
    }
}
