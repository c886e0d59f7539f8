//! Outgoing mail (login links, second-factor codes) and the SMTP connection settings that
//! SMTP authentication shares with it.
//!
//! Connections are protected by STARTTLS or implicit TLS with verified certificates (the
//! system's roots plus `auth_ca_file`, as for every authentication server: [`AuthTls`]);
//! a plain connection is allowed only to a server on loopback, and a server's certificate
//! goes unchecked only when its host is listed in `auth_insecure_servers`. Callers keep
//! secrets out of subject lines: subjects end up in mail logs and notification previews.

use std::fmt;
use std::time::Duration;

use lettre::message::{header::ContentType, Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::Credentials as SmtpCredentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{Address, AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use crate::auth::tls::AuthTls;
use crate::config::Config;
use crate::net::is_loopback_host;

/// How long one mail may take, connection and TLS included.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a mail could not be prepared or sent.
#[derive(Debug, thiserror::Error)]
pub enum MailError {
    /// The settings cannot work (no server, unknown `smtp_use_ssl`, unreadable CA file, …).
    #[error("mail settings: {0}")]
    Misconfigured(String),
    #[error("not a valid e-mail address: {0:?}")]
    InvalidAddress(String),
    #[error("cannot build the message: {0}")]
    Message(#[from] lettre::error::Error),
    /// Connection, TLS, authentication or a refusal by the server.
    #[error("sending through {server} failed: {source}")]
    Transport {
        server: String,
        #[source]
        source: lettre::transport::smtp::Error,
    },
    #[error("sending through {server} took longer than {} s", timeout.as_secs())]
    Timeout { server: String, timeout: Duration },
}

/// Whether `text` is a plain e-mail address (`user@domain`, no display name).
pub fn is_email_address(text: &str) -> bool {
    text.parse::<Address>().is_ok()
}

/// How the connection to the SMTP server is protected (`smtp_use_ssl`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpSecurity {
    /// Plain connection upgraded with STARTTLS, which must succeed (never falls back).
    StartTls,
    /// TLS from the first byte (SMTPS, usually port 465).
    Tls,
    /// No encryption: only to a server on loopback.
    None,
}

impl SmtpSecurity {
    /// `starttls`, `tls` (also `ssl`, `smtps`) or `none`, in any case.
    pub fn parse(value: &str) -> Option<Self> {
        match value.to_ascii_lowercase().as_str() {
            "starttls" => Some(Self::StartTls),
            "tls" | "ssl" | "smtps" => Some(Self::Tls),
            "none" => Some(Self::None),
            _ => None,
        }
    }
}

/// Where and how to reach an SMTP server. The TLS settings (roots, CA file) are loaded
/// once, here, and shared by every connection.
#[derive(Clone)]
pub struct SmtpEndpoint {
    host: String,
    port: u16,
    security: SmtpSecurity,
    tls: Option<TlsParameters>,
    verified: bool,
}

impl fmt::Debug for SmtpEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SmtpEndpoint")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("security", &self.security)
            .field("verified", &self.verified)
            .finish()
    }
}

impl SmtpEndpoint {
    /// Trusts the system's roots and `tls`'s extra roots (`auth_ca_file`); verifies no
    /// certificate when `tls` lists the host as insecure.
    pub fn new(
        host: &str,
        port: u16,
        security: SmtpSecurity,
        tls: &AuthTls,
    ) -> Result<Self, MailError> {
        let configured = host.trim();
        // An IPv6 literal may be written in brackets; sockets and certificates want it bare.
        let host = configured.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() {
            return Err(MailError::Misconfigured("smtp_server is not set".into()));
        }
        if port == 0 {
            return Err(MailError::Misconfigured("smtp_port is 0".into()));
        }
        let insecure = !tls.verifies(configured) || !tls.verifies(host);
        let tls = match security {
            SmtpSecurity::None if !is_loopback_host(host) => {
                return Err(MailError::Misconfigured(format!(
                    "a connection without TLS is allowed only to a server on loopback, not {host}"
                )))
            }
            SmtpSecurity::None => None,
            SmtpSecurity::StartTls | SmtpSecurity::Tls => {
                Some(tls_parameters(host, tls, insecure)?)
            }
        };
        if insecure && tls.is_some() {
            tracing::warn!(server = %host, "certificate of this SMTP server is not verified (auth_insecure_servers)");
        }
        Ok(Self {
            host: host.to_owned(),
            port,
            security,
            tls,
            verified: !insecure,
        })
    }

    /// `smtp_server`, `smtp_port`, `smtp_use_ssl`, `auth_ca_file`, `auth_insecure_servers`.
    pub fn from_config(cfg: &Config) -> Result<Self, MailError> {
        let security = SmtpSecurity::parse(&cfg.smtp_use_ssl).ok_or_else(|| {
            MailError::Misconfigured(format!(
                "smtp_use_ssl must be starttls, tls or none, not {:?}",
                cfg.smtp_use_ssl
            ))
        })?;
        Self::with_config_tls(cfg, cfg.smtp_port, security)
    }

    fn with_config_tls(cfg: &Config, port: u16, security: SmtpSecurity) -> Result<Self, MailError> {
        let tls = AuthTls::from_config(cfg).map_err(|e| MailError::Misconfigured(e.to_string()))?;
        Self::new(&cfg.smtp_server, port, security, &tls)
    }

    pub fn host(&self) -> &str {
        &self.host
    }

    /// `host:port`, for messages and logs.
    pub fn server(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    /// A transport that connects (and authenticates, with `credentials`) per use.
    pub(crate) fn transport(
        &self,
        credentials: Option<SmtpCredentials>,
        timeout: Duration,
    ) -> AsyncSmtpTransport<Tokio1Executor> {
        let tls = match (&self.security, &self.tls) {
            (SmtpSecurity::StartTls, Some(p)) => Tls::Required(p.clone()),
            (SmtpSecurity::Tls, Some(p)) => Tls::Wrapper(p.clone()),
            _ => Tls::None,
        };
        let builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(self.host.as_str())
            .port(self.port)
            .tls(tls)
            .timeout(Some(timeout));
        match credentials {
            Some(c) => builder.credentials(c).build(),
            None => builder.build(),
        }
    }
}

fn tls_parameters(host: &str, tls: &AuthTls, insecure: bool) -> Result<TlsParameters, MailError> {
    let mut builder = TlsParameters::builder(host.to_owned());
    for der in tls.extra_roots() {
        let cert = Certificate::from_der(der.to_vec())
            .map_err(|e| MailError::Misconfigured(format!("auth_ca_file: {e}")))?;
        builder = builder.add_root_certificate(cert);
    }
    if insecure {
        builder = builder
            .dangerous_accept_invalid_certs(true)
            .dangerous_accept_invalid_hostnames(true);
    }
    builder
        .build_rustls()
        .map_err(|e| MailError::Misconfigured(format!("TLS settings for {host}: {e}")))
}

/// Sends mail from `email_from`, authenticating with `email_passwd` when one is set.
#[derive(Clone)]
pub struct Mailer {
    endpoint: SmtpEndpoint,
    from: Mailbox,
    transport: AsyncSmtpTransport<Tokio1Executor>,
    timeout: Duration,
}

impl fmt::Debug for Mailer {
    /// Never the password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Mailer")
            .field("endpoint", &self.endpoint)
            .field("from", &self.from.to_string())
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl Mailer {
    /// From the configuration. `email_method`: `auto` (default) and `SSL` follow
    /// `smtp_use_ssl`; the original's plain `port` (on `smtp_port`) and `simple` (port 25)
    /// are accepted for a server on loopback only.
    pub fn from_config(cfg: &Config) -> Result<Self, MailError> {
        let endpoint = match cfg.email_method.to_ascii_lowercase().as_str() {
            "auto" | "ssl" | "" => SmtpEndpoint::from_config(cfg)?,
            "port" => SmtpEndpoint::with_config_tls(cfg, cfg.smtp_port, SmtpSecurity::None)?,
            "simple" => SmtpEndpoint::with_config_tls(cfg, 25, SmtpSecurity::None)?,
            other => {
                return Err(MailError::Misconfigured(format!(
                    "email_method must be auto, SSL, port or simple, not {other:?}"
                )))
            }
        };
        let password = (!cfg.email_passwd.is_empty()).then_some(cfg.email_passwd.as_str());
        Self::new(endpoint, &cfg.email_from, password)
    }

    /// `from` is an address, optionally with a display name (`DARTS <darts@example.org>`);
    /// with a password, its address is the SMTP AUTH user.
    pub fn new(
        endpoint: SmtpEndpoint,
        from: &str,
        password: Option<&str>,
    ) -> Result<Self, MailError> {
        if from.trim().is_empty() {
            return Err(MailError::Misconfigured("email_from is not set".into()));
        }
        let from: Mailbox = from
            .trim()
            .parse()
            .map_err(|_| MailError::InvalidAddress(from.to_owned()))?;
        let credentials =
            password.map(|p| SmtpCredentials::new(from.email.to_string(), p.to_owned()));
        let transport = endpoint.transport(credentials, SEND_TIMEOUT);
        Ok(Self {
            endpoint,
            from,
            transport,
            timeout: SEND_TIMEOUT,
        })
    }

    /// A shorter (or longer) bound on one mail than [`SEND_TIMEOUT`].
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sends one mail: plain `text`, and `html` as the alternative when given.
    pub async fn send(
        &self,
        to: &str,
        subject: &str,
        text: &str,
        html: Option<&str>,
    ) -> Result<(), MailError> {
        let to_address: Address = to
            .trim()
            .parse()
            .map_err(|_| MailError::InvalidAddress(to.to_owned()))?;
        let builder = Message::builder()
            .from(self.from.clone())
            .to(Mailbox::new(None, to_address))
            .subject(subject)
            // Generated (random@hostname): mail without one looks like spam.
            .message_id(None);
        let message = match html {
            Some(html) => builder.multipart(MultiPart::alternative_plain_html(
                text.to_owned(),
                html.to_owned(),
            ))?,
            None => builder.singlepart(
                SinglePart::builder()
                    .header(ContentType::TEXT_PLAIN)
                    .body(text.to_owned()),
            )?,
        };
        let server = self.endpoint.server();
        match tokio::time::timeout(self.timeout, self.transport.send(message)).await {
            Ok(Ok(_)) => {
                tracing::info!(server = %server, to = %to.trim(), "mail sent");
                Ok(())
            }
            Ok(Err(source)) => {
                tracing::warn!(server = %server, to = %to.trim(), error = %source, "mail not sent");
                Err(MailError::Transport { server, source })
            }
            Err(_) => {
                tracing::warn!(server = %server, to = %to.trim(), "mail not sent: timeout");
                Err(MailError::Timeout {
                    server,
                    timeout: self.timeout,
                })
            }
        }
    }
}

/// Escapes text for HTML bodies and attribute values.
pub(crate) fn html_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The service's name for subjects and greetings (`layout_title`), on one line.
pub(crate) fn service_name(title: &str) -> String {
    let one_line = title.split_whitespace().collect::<Vec<_>>().join(" ");
    if one_line.is_empty() {
        "darts".to_owned()
    } else {
        one_line
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn security_values() {
        assert_eq!(
            SmtpSecurity::parse("STARTTLS"),
            Some(SmtpSecurity::StartTls)
        );
        assert_eq!(SmtpSecurity::parse("ssl"), Some(SmtpSecurity::Tls));
        assert_eq!(SmtpSecurity::parse("none"), Some(SmtpSecurity::None));
        assert_eq!(SmtpSecurity::parse("1"), None);
    }

    fn system_roots() -> AuthTls {
        AuthTls::new(None, &[]).unwrap()
    }

    #[test]
    fn plain_connections_only_to_loopback() {
        let tls = system_roots();
        for host in ["127.0.0.1", "localhost", "[::1]", "::1"] {
            assert!(
                SmtpEndpoint::new(host, 25, SmtpSecurity::None, &tls).is_ok(),
                "{host}"
            );
        }
        let err = SmtpEndpoint::new("mail.example.org", 25, SmtpSecurity::None, &tls).unwrap_err();
        assert!(matches!(err, MailError::Misconfigured(m) if m.contains("loopback")));
        assert!(SmtpEndpoint::new("", 587, SmtpSecurity::StartTls, &tls).is_err());
    }

    #[test]
    fn only_listed_hosts_go_unverified() {
        let tls = AuthTls::new(None, &["legacy.example.org".to_owned()]).unwrap();
        let legacy = SmtpEndpoint::new("legacy.example.org", 465, SmtpSecurity::Tls, &tls).unwrap();
        let other = SmtpEndpoint::new("mail.example.org", 465, SmtpSecurity::Tls, &tls).unwrap();
        assert!(format!("{legacy:?}").contains("verified: false"));
        assert!(format!("{other:?}").contains("verified: true"));
    }

    #[test]
    fn config_values_are_checked() {
        let mut cfg = Config {
            smtp_server: "mail.example.org".into(),
            email_from: "darts@example.org".into(),
            ..Config::default()
        };
        assert!(Mailer::from_config(&cfg).is_ok());
        cfg.email_method = "simple".into();
        assert!(matches!(
            Mailer::from_config(&cfg),
            Err(MailError::Misconfigured(m)) if m.contains("loopback")
        ));
        cfg.email_method = "carrier-pigeon".into();
        assert!(Mailer::from_config(&cfg).is_err());
        cfg.email_method = "auto".into();
        cfg.smtp_use_ssl = "yes".into();
        assert!(Mailer::from_config(&cfg).is_err());
        cfg.smtp_use_ssl = "tls".into();
        cfg.email_from = String::new();
        assert!(matches!(
            Mailer::from_config(&cfg),
            Err(MailError::Misconfigured(m)) if m.contains("email_from")
        ));
    }

    #[test]
    fn ca_file_must_hold_a_certificate() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        for ca in [empty, dir.path().join("missing.pem")] {
            let cfg = Config {
                smtp_server: "mail.example.org".into(),
                email_from: "darts@example.org".into(),
                auth_ca_file: ca.display().to_string(),
                ..Config::default()
            };
            let err = Mailer::from_config(&cfg).unwrap_err();
            assert!(
                matches!(&err, MailError::Misconfigured(m) if m.contains("auth_ca_file")),
                "{err:?}"
            );
        }
    }

    #[test]
    fn debug_hides_the_password() {
        let cfg = Config {
            smtp_server: "mail.example.org".into(),
            email_from: "darts@example.org".into(),
            email_passwd: "s3cret-sender".into(),
            ..Config::default()
        };
        let mailer = Mailer::from_config(&cfg).unwrap();
        let shown = format!("{mailer:?}");
        assert!(shown.contains("mail.example.org"));
        assert!(!shown.contains("s3cret-sender"));
    }

    #[test]
    fn addresses() {
        assert!(is_email_address("alice@example.org"));
        assert!(!is_email_address("alice"));
        assert!(!is_email_address("Alice <alice@example.org>"));
        assert!(!is_email_address("alice@example.org\r\nBcc: x@y.z"));
    }

    #[test]
    fn escaping_and_names() {
        assert_eq!(
            html_escape(r#"<a href="x">&'"#),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
        assert_eq!(service_name("  Data\r\nAnalysis "), "Data Analysis");
        assert_eq!(service_name(""), "darts");
    }
}
