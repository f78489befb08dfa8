//! Outgoing e-mail (password reset links): the operator's SMTP relay from `ROTOR_SMTP_URL` and
//! `ROTOR_MAIL_FROM`, sent with `lettre` over rustls, behind the small [`Mailer`] trait. The URL
//! is parsed once at start ([`SmtpConfig::parse`]); its password never appears in `Debug`
//! output or logs.
//!
//! | URL | connection |
//! |---|---|
//! | `smtps://user:pass@host` | TLS from the first byte (default port 465) |
//! | `smtp://user:pass@host` | STARTTLS required (default port 587) |
//! | `smtp://host?tls=opportunistic` | STARTTLS when offered, else plain (not for production) |
//! | `smtp://host:25?tls=none` | plain SMTP (a relay on the same host, a test mailbox) |

use std::time::Duration;

use async_trait::async_trait;
use lettre::message::header::ContentType;
use lettre::message::{Mailbox, Message};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};

/// How long one SMTP conversation may take.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(20);

/// One plain-text message to one recipient.
#[derive(Clone)]
pub struct Mail {
    pub to: String,
    pub subject: String,
    pub text: String,
}

/// Why a message was not sent, or the mail settings were refused.
#[derive(Debug, thiserror::Error)]
pub enum MailError {
    #[error("ROTOR_SMTP_URL: {0}")]
    Url(String),
    #[error("ROTOR_MAIL_FROM is not a mail address: {0}")]
    From(String),
    #[error("the recipient is not a mail address")]
    To,
    #[error("building the message: {0}")]
    Build(#[from] lettre::error::Error),
    #[error("SMTP: {0}")]
    Smtp(#[from] lettre::transport::smtp::Error),
}

/// Something that delivers mail.
#[async_trait]
pub trait Mailer: Send + Sync {
    /// Sends `mail`; an error says why it was not accepted by the relay.
    async fn send(&self, mail: Mail) -> Result<(), MailError>;
    /// Where mail goes, for the start-up log (no credentials).
    fn describe(&self) -> String;
}

/// How the connection to the relay is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Security {
    /// TLS from the first byte (`smtps://`).
    Tls,
    /// STARTTLS, required (`smtp://`).
    StartTls,
    /// STARTTLS when the server offers it (`?tls=opportunistic`).
    Opportunistic,
    /// None (`?tls=none`).
    Plain,
}

/// The operator's SMTP relay and sender.
#[derive(Clone)]
pub struct SmtpConfig {
    pub host: String,
    pub port: u16,
    pub security: Security,
    user: Option<String>,
    password: Option<String>,
    /// The `From:` of every message.
    pub from: Mailbox,
}

impl std::fmt::Debug for SmtpConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpConfig")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("security", &self.security)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "[redacted]"))
            .field("from", &self.from.to_string())
            .finish()
    }
}

fn decoded(part: &str) -> Result<String, MailError> {
    String::from_utf8(crate::percent::decode(part.as_bytes()))
        .map_err(|_| MailError::Url("the user name or password is not UTF-8".into()))
}

impl SmtpConfig {
    /// Reads a relay URL (see the module's table) and the sender; without `from`, mail comes
    /// from `Rotor <no-reply@HOST>` where HOST is the public URL's host.
    pub fn parse(url: &str, from: Option<&str>, public_url: &str) -> Result<Self, MailError> {
        let url = url::Url::parse(url.trim()).map_err(|e| MailError::Url(e.to_string()))?;
        let tls = url
            .query_pairs()
            .find(|(k, _)| k == "tls")
            .map(|(_, v)| v.to_ascii_lowercase());
        let security = match (url.scheme(), tls.as_deref()) {
            ("smtps", None | Some("required")) => Security::Tls,
            ("smtp", None | Some("required")) => Security::StartTls,
            ("smtp", Some("opportunistic")) => Security::Opportunistic,
            ("smtp", Some("none")) => Security::Plain,
            ("smtp" | "smtps", Some(other)) => {
                return Err(MailError::Url(format!(
                    "tls={other}: use required, opportunistic or none"
                )))
            }
            (scheme, _) => {
                return Err(MailError::Url(format!(
                    "scheme {scheme}: use smtp:// or smtps://"
                )))
            }
        };
        let host = url
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| MailError::Url("a host is required".into()))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let port = url.port().unwrap_or(match security {
            Security::Tls => 465,
            Security::Plain => 25,
            Security::StartTls | Security::Opportunistic => 587,
        });
        let user = Some(decoded(url.username())?).filter(|u| !u.is_empty());
        let password = url.password().map(decoded).transpose()?;
        if password.is_some() && user.is_none() {
            return Err(MailError::Url("a password without a user name".into()));
        }
        let from: Mailbox = match from.map(str::trim).filter(|f| !f.is_empty()) {
            Some(f) => f
                .parse()
                .map_err(|e: lettre::address::AddressError| MailError::From(e.to_string()))?,
            None => url::Url::parse(public_url)
                .ok()
                .and_then(|u| u.host_str().map(str::to_owned))
                .and_then(|h| format!("Rotor <no-reply@{h}>").parse().ok())
                .unwrap_or_else(|| {
                    Mailbox::new(
                        Some("Rotor".into()),
                        "no-reply@localhost".parse().expect("valid"),
                    )
                }),
        };
        Ok(Self {
            host,
            port,
            security,
            user,
            password,
            from,
        })
    }

    /// Whether credentials would cross the network unencrypted.
    pub fn credentials_in_clear(&self) -> bool {
        self.user.is_some()
            && matches!(self.security, Security::Plain | Security::Opportunistic)
            && !matches!(self.host.as_str(), "localhost" | "127.0.0.1" | "::1")
    }
}

/// Mail through the operator's SMTP relay.
pub struct SmtpMailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    config: SmtpConfig,
}

impl SmtpMailer {
    /// A mailer for `config` (no connection is made until the first message).
    pub fn new(config: SmtpConfig) -> Result<Self, MailError> {
        let host = config.host.as_str();
        let builder = match config.security {
            Security::Tls => AsyncSmtpTransport::<Tokio1Executor>::relay(host)?,
            Security::StartTls => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(host)?,
            Security::Opportunistic => {
                AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host)
                    .tls(Tls::Opportunistic(TlsParameters::new(host.to_owned())?))
            }
            Security::Plain => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host),
        };
        let mut builder = builder.port(config.port).timeout(Some(SEND_TIMEOUT));
        if let Some(user) = &config.user {
            builder = builder.credentials(Credentials::new(
                user.clone(),
                config.password.clone().unwrap_or_default(),
            ));
        }
        Ok(Self {
            transport: builder.build(),
            config,
        })
    }
}

#[async_trait]
impl Mailer for SmtpMailer {
    async fn send(&self, mail: Mail) -> Result<(), MailError> {
        let to: Mailbox = mail.to.parse().map_err(|_| MailError::To)?;
        let message = Message::builder()
            .from(self.config.from.clone())
            .to(to)
            .subject(mail.subject)
            .header(ContentType::TEXT_PLAIN)
            .body(mail.text)?;
        self.transport.send(message).await?;
        Ok(())
    }

    fn describe(&self) -> String {
        let security = match self.config.security {
            Security::Tls => "TLS",
            Security::StartTls => "STARTTLS",
            Security::Opportunistic => "STARTTLS if offered",
            Security::Plain => "no encryption",
        };
        format!(
            "SMTP {}:{} ({security}), from {}",
            self.config.host, self.config.port, self.config.from
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PUBLIC: &str = "https://rotor.example.com";

    #[test]
    fn smtp_urls_say_how_the_relay_is_reached_and_hide_the_password() {
        let c = SmtpConfig::parse("smtp://ops%40x.io:p%3Ass@mail.x.io:587", None, PUBLIC).unwrap();
        assert_eq!(c.security, Security::StartTls);
        assert_eq!((c.host.as_str(), c.port), ("mail.x.io", 587));
        assert_eq!(c.user.as_deref(), Some("ops@x.io"));
        assert_eq!(c.password.as_deref(), Some("p:ss"));
        assert_eq!(c.from.to_string(), "Rotor <no-reply@rotor.example.com>");
        let debug = format!("{c:?}");
        assert!(
            !debug.contains("p:ss") && debug.contains("[redacted]"),
            "{debug}"
        );

        let c = SmtpConfig::parse("smtps://u:p@mail.x.io", Some("ops@x.io"), PUBLIC).unwrap();
        assert_eq!((c.security, c.port), (Security::Tls, 465));
        assert_eq!(c.from.to_string(), "ops@x.io");
        let c = SmtpConfig::parse("smtp://127.0.0.1:2525?tls=none", None, PUBLIC).unwrap();
        assert_eq!((c.security, c.port), (Security::Plain, 2525));
        assert!(!c.credentials_in_clear());
        let c = SmtpConfig::parse("smtp://u:p@relay.x.io?tls=opportunistic", None, PUBLIC).unwrap();
        assert!(c.credentials_in_clear());
    }

    #[test]
    fn bad_smtp_settings_are_refused_with_the_reason() {
        for (url, from) in [
            ("http://mail.x.io", None),
            ("smtp://", None),
            ("smtp://mail.x.io?tls=maybe", None),
            ("smtp://:secret@mail.x.io", None),
            ("smtp://mail.x.io", Some("not an address")),
        ] {
            let e = SmtpConfig::parse(url, from, PUBLIC).unwrap_err();
            assert!(!e.to_string().contains("secret"), "{e}");
        }
    }
}
