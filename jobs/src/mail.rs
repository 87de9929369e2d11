//! Email over SMTP, for any job that writes to people: `[smtp]` config and
//! [`Mailer::send`] (lettre on tokio, TLS by rustls with the system's
//! roots; no native-tls).
//!
//! A message is `multipart/alternative` (plain text + HTML) when it has
//! HTML — the HTML inside `multipart/related` with the images it shows by
//! `cid:` when it has inline parts — inside `multipart/mixed` when it has
//! attachments. Subjects and
//! names are UTF-8 (RFC 2047 encoded words). A caller-supplied Message-ID
//! is used as is (`<…>` added when missing): a job that derives it from
//! what it sends (the report and its period) gets the same id on every
//! attempt, so a receiver or a "was it sent?" check can tell duplicates.
//!
//! Failures follow the SMTP reply code and the step they happen at: 5xx is
//! [`MailError::Permanent`] (record a bounce, do not retry); 4xx, or a
//! refused or dropped connection, a timeout or a TLS failure *before the
//! message's content was sent*, is [`MailError::Transient`] (known not
//! delivered: retry later). A timeout or a dropped connection *after* the
//! content's final dot, before the relay answered, is [`MailError::Unknown`]:
//! the relay may have taken the message, so a caller that promises "at most
//! once" must not re-send it. That is why the SMTP dialogue is driven here
//! step by step on lettre's connection rather than through its transport,
//! whose errors do not say at which step they happened. A message that
//! cannot be built (bad address, bad header) is permanent too.
//! Credentials come from environment variables named in config and are
//! never logged.

use std::time::Duration;

use kairos_core::config::KeyError;
use lettre::address::Envelope;
use lettre::message::header::{ContentType, HeaderName, HeaderValue};
use lettre::message::{Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::{Credentials, DEFAULT_MECHANISMS};
use lettre::transport::smtp::client::{AsyncSmtpConnection, Certificate, Tls, TlsParameters};
use lettre::transport::smtp::commands::{Data, Mail, Rcpt};
use lettre::transport::smtp::extension::{ClientId, Extension, MailBodyParameter, MailParameter};
use lettre::transport::smtp::response::Response;
use lettre::Message;
use serde::Deserialize;

/// How the SMTP connection is secured.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TlsMode {
    /// Plain text (a local relay or a test server only).
    None,
    /// Plain connection upgraded with STARTTLS, required (port 587).
    #[default]
    Starttls,
    /// TLS from the first byte (SMTPS, port 465).
    Tls,
}

impl TlsMode {
    /// The usual port for the mode.
    pub fn default_port(self) -> u16 {
        match self {
            TlsMode::None => 25,
            TlsMode::Starttls => 587,
            TlsMode::Tls => 465,
        }
    }
}

/// `[smtp]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpConfig {
    /// The relay's host name (also the name its TLS certificate must carry).
    pub host: String,
    /// Default: 25, 587 or 465 by `tls`.
    #[serde(default)]
    pub port: Option<u16>,
    /// `none`, `starttls` (default) or `tls`.
    #[serde(default)]
    pub tls: TlsMode,
    /// The sender, `Name <address>` or `address`; a message's `from_name`
    /// replaces the name.
    pub from: String,
    /// Environment variable holding the SMTP user name (with `password_env`).
    #[serde(default)]
    pub username_env: Option<String>,
    /// Environment variable holding the SMTP password.
    #[serde(default)]
    pub password_env: Option<String>,
    /// Limit on connecting and on each SMTP command's answer (the message
    /// content's included).
    #[serde(default = "default_smtp_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// PEM file of CA certificates trusted besides the system's (a relay
    /// with a private CA). Certificates are always verified.
    #[serde(default)]
    pub ca_file: Option<std::path::PathBuf>,
}

fn default_smtp_timeout() -> Duration {
    Duration::from_secs(30)
}

impl SmtpConfig {
    /// The port in use.
    pub fn port(&self) -> u16 {
        self.port.unwrap_or_else(|| self.tls.default_port())
    }

    /// Checks what serde cannot; errors name the key under `smtp.`.
    pub fn validate(&self) -> Result<(), KeyError> {
        if self.host.trim().is_empty() || self.host.contains(char::is_whitespace) {
            return Err(("host".into(), "must be a host name".into()));
        }
        if self.port == Some(0) {
            return Err(("port".into(), "must be between 1 and 65535".into()));
        }
        self.from
            .parse::<Mailbox>()
            .map_err(|e| ("from".to_string(), format!("`{}` is not an address: {e}", self.from)))?;
        for (key, var) in [
            ("username_env", &self.username_env),
            ("password_env", &self.password_env),
        ] {
            if let Some(var) = var {
                if var.trim().is_empty() || var.contains(char::is_whitespace) {
                    return Err((
                        key.into(),
                        "must name an environment variable (not the secret itself)".into(),
                    ));
                }
            }
        }
        if self.username_env.is_some() != self.password_env.is_some() {
            return Err((
                "password_env".into(),
                "set both `username_env` and `password_env`, or neither".into(),
            ));
        }
        let loopback = matches!(self.host.as_str(), "localhost" | "127.0.0.1" | "::1");
        if self.username_env.is_some() && self.tls == TlsMode::None && !loopback {
            return Err((
                "tls".into(),
                "credentials would be sent in clear text: use `starttls` or `tls`".into(),
            ));
        }
        if self.timeout.is_zero() {
            return Err(("timeout".into(), "must be longer than 0s".into()));
        }
        Ok(())
    }
}

/// A file attached to an email.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Attachment {
    /// The name the recipient sees.
    pub filename: String,
    /// MIME type, e.g. `application/pdf`.
    pub content_type: String,
    /// The content.
    pub bytes: Vec<u8>,
}

/// A part the HTML shows by reference (`<img src="cid:ID">`): sent inside
/// `multipart/related` with the HTML, `Content-ID: <ID>`, disposition
/// inline. Mail clients that do not render inline SVG (Gmail, Outlook)
/// show these.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InlinePart {
    /// The id the HTML names after `cid:` (no `<>`).
    pub content_id: String,
    /// A name for clients that list it.
    pub filename: String,
    /// MIME type, e.g. `image/png`.
    pub content_type: String,
    /// The content.
    pub bytes: Vec<u8>,
}

/// One email. Build it with `..Default::default()`, so that fields added
/// later do not break callers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Email {
    /// Display name of the sender (the address is `[smtp].from`'s); the
    /// config's name when `None`.
    pub from_name: Option<String>,
    /// Recipients, `Name <address>` or `address`.
    pub to: Vec<String>,
    /// The subject (any UTF-8).
    pub subject: String,
    /// The plain-text part (always present: clients without HTML, previews).
    pub text: String,
    /// The HTML part.
    pub html: Option<String>,
    /// Files attached.
    pub attachments: Vec<Attachment>,
    /// Parts the HTML shows inline (ignored without HTML).
    pub inline: Vec<InlinePart>,
    /// `Message-ID`, with or without `<>`; generated (`<uuid@sender's
    /// domain>`) when `None`. Give a deterministic one for send-once checks.
    pub message_id: Option<String>,
    /// `Reply-To`.
    pub reply_to: Option<String>,
    /// Extra headers (`List-Unsubscribe`, `X-Kairos-Report`…). Headers that
    /// shape the message (From, To, Subject, Message-ID, Date, MIME ones)
    /// are refused.
    pub headers: Vec<(String, String)>,
}

/// What the server said when it accepted a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentMail {
    /// The message's `Message-ID`, with `<>`.
    pub message_id: String,
    /// The server's final reply, e.g. `250 2.0.0 Ok: queued as 4F2`.
    pub response: String,
}

/// Why a message was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MailError {
    /// Worth another try later: a 4xx reply, the server unreachable, a
    /// timeout, a TLS failure.
    #[error("mail: transient failure{}: {reason}", code.map(|c| format!(" ({c})")).unwrap_or_default())]
    Transient {
        /// What happened.
        reason: String,
        /// The SMTP reply code, when the server answered.
        code: Option<u16>,
    },
    /// Will fail the same way again: a 5xx reply (a bounce: unknown
    /// mailbox, refused content) or a message that cannot be built.
    #[error("mail: permanent failure{}: {reason}", code.map(|c| format!(" ({c})")).unwrap_or_default())]
    Permanent {
        /// What happened.
        reason: String,
        /// The SMTP reply code, when the server answered.
        code: Option<u16>,
    },
    /// The message's content was sent, then the connection timed out or
    /// broke before the relay answered: it may or may not have been
    /// accepted. Re-sending may deliver it twice.
    #[error("mail: outcome unknown: {reason}")]
    Unknown {
        /// What happened.
        reason: String,
    },
}

impl MailError {
    fn invalid(reason: impl Into<String>) -> Self {
        MailError::Permanent {
            reason: reason.into(),
            code: None,
        }
    }

    /// Whether retrying later may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, MailError::Transient { .. })
    }
}

/// Why the mailer could not be built (at process start).
#[derive(Debug, thiserror::Error)]
pub enum MailSetupError {
    /// A credentials variable is not set.
    #[error("smtp.{key}: environment variable {var} is not set")]
    MissingSecret {
        /// `username_env` or `password_env`.
        key: &'static str,
        /// The variable.
        var: String,
    },
    /// `from` is not an address.
    #[error("smtp.from: {0}")]
    From(String),
    /// TLS could not be set up.
    #[error("smtp TLS: {0}")]
    Tls(String),
}

/// Sends email through the configured relay, one connection per message
/// (no pool: nothing runs in the background, and a refused message leaves
/// no half-used connection behind).
#[derive(Clone)]
pub struct Mailer {
    from: Mailbox,
    host: String,
    port: u16,
    tls: Tls,
    credentials: Option<Credentials>,
    timeout: Duration,
}

impl std::fmt::Debug for Mailer {
    // Credentials stay out of debug output.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mailer")
            .field("relay", &format!("{}:{}", self.host, self.port))
            .field("from", &self.from.to_string())
            .finish()
    }
}

/// Headers a caller may not set: they are the message's structure.
const RESERVED_HEADERS: &[&str] = &[
    "from",
    "to",
    "cc",
    "bcc",
    "subject",
    "message-id",
    "date",
    "reply-to",
    "sender",
    "mime-version",
    "content-type",
    "content-transfer-encoding",
];

impl Mailer {
    /// The mailer for `[smtp]`, credentials read from the environment.
    pub fn from_config(config: &SmtpConfig) -> Result<Self, MailSetupError> {
        Self::from_config_with(config, |var| std::env::var(var).ok())
    }

    /// The mailer for the job kinds' config; `None` without `[smtp]`.
    pub fn from_jobs_config(config: &crate::JobsConfig) -> Result<Option<Self>, MailSetupError> {
        config.smtp.as_ref().map(Self::from_config).transpose()
    }

    /// As [`Mailer::from_config`], with the environment given.
    pub fn from_config_with(config: &SmtpConfig, env: impl Fn(&str) -> Option<String>) -> Result<Self, MailSetupError> {
        let from: Mailbox = config
            .from
            .parse()
            .map_err(|e| MailSetupError::From(format!("`{}`: {e}", config.from)))?;
        let secret = |key: &'static str, var: &Option<String>| -> Result<Option<String>, MailSetupError> {
            match var {
                None => Ok(None),
                Some(var) => env(var)
                    .filter(|v| !v.is_empty())
                    .map(Some)
                    .ok_or_else(|| MailSetupError::MissingSecret { key, var: var.clone() }),
            }
        };
        let user = secret("username_env", &config.username_env)?;
        let password = secret("password_env", &config.password_env)?;
        let tls_params = || -> Result<TlsParameters, MailSetupError> {
            let mut b = TlsParameters::builder(config.host.clone());
            if let Some(path) = &config.ca_file {
                let bad =
                    |e: &dyn std::fmt::Display| MailSetupError::Tls(format!("smtp.ca_file {}: {e}", path.display()));
                let pem = std::fs::read(path).map_err(|e| bad(&e))?;
                b = b.add_root_certificate(Certificate::from_pem(&pem).map_err(|e| bad(&e))?);
            }
            b.build_rustls().map_err(|e| MailSetupError::Tls(e.to_string()))
        };
        let tls = match config.tls {
            TlsMode::None => Tls::None,
            TlsMode::Starttls => Tls::Required(tls_params()?),
            TlsMode::Tls => Tls::Wrapper(tls_params()?),
        };
        let credentials = match (user, password) {
            (Some(user), Some(password)) => Some(Credentials::new(user, password)),
            _ => None,
        };
        Ok(Self {
            from,
            host: config.host.clone(),
            port: config.port(),
            tls,
            credentials,
            timeout: config.timeout,
        })
    }

    /// Builds the message (without sending it): what [`Mailer::send`] sends.
    pub fn message(&self, email: &Email) -> Result<(Message, String), MailError> {
        let mut from = self.from.clone();
        if let Some(name) = &email.from_name {
            from.name = Some(name.clone());
        }
        let message_id = match &email.message_id {
            Some(id) => normalise_message_id(id)?,
            None => format!("<{}@{}>", uuid::Uuid::new_v4().simple(), self.from.email.domain()),
        };
        if email.to.is_empty() {
            return Err(MailError::invalid("no recipient"));
        }
        let mut b = Message::builder()
            .from(from)
            .subject(email.subject.clone())
            .message_id(Some(message_id.clone()))
            .date_now();
        for to in &email.to {
            let mbox: Mailbox = to
                .parse()
                .map_err(|e| MailError::invalid(format!("recipient `{to}`: {e}")))?;
            b = b.to(mbox);
        }
        if let Some(r) = &email.reply_to {
            let mbox: Mailbox = r
                .parse()
                .map_err(|e| MailError::invalid(format!("reply-to `{r}`: {e}")))?;
            b = b.reply_to(mbox);
        }
        for (name, value) in &email.headers {
            if RESERVED_HEADERS.contains(&name.to_ascii_lowercase().as_str()) {
                return Err(MailError::invalid(format!("header `{name}` is set by the mailer")));
            }
            if value.contains(['\r', '\n']) {
                return Err(MailError::invalid(format!(
                    "header `{name}`: line breaks are not allowed"
                )));
            }
            let header = HeaderName::new_from_ascii(name.clone())
                .map_err(|e| MailError::invalid(format!("header `{name}`: {e}")))?;
            b = b.raw_header(HeaderValue::new(header, value.clone()));
        }
        let body = match &email.html {
            Some(html) if !email.inline.is_empty() => {
                let mut related = MultiPart::related().singlepart(SinglePart::html(html.clone()));
                for p in &email.inline {
                    if p.content_id.is_empty() || p.content_id.contains(['<', '>', ' ', '\r', '\n']) {
                        return Err(MailError::invalid(format!(
                            "inline part `{}`: bad content id",
                            p.content_id
                        )));
                    }
                    let ct = ContentType::parse(&p.content_type).map_err(|e| {
                        MailError::invalid(format!("inline part `{}`: content type: {e}", p.content_id))
                    })?;
                    related = related.singlepart(
                        lettre::message::Attachment::new_inline_with_name(p.content_id.clone(), p.filename.clone())
                            .body(p.bytes.clone(), ct),
                    );
                }
                Body::Multi(
                    MultiPart::alternative()
                        .singlepart(SinglePart::plain(email.text.clone()))
                        .multipart(related),
                )
            }
            Some(html) => Body::Multi(MultiPart::alternative_plain_html(email.text.clone(), html.clone())),
            None => Body::Single(SinglePart::plain(email.text.clone())),
        };
        let message = if email.attachments.is_empty() {
            match body {
                Body::Multi(m) => b.multipart(m),
                Body::Single(s) => b.singlepart(s),
            }
        } else {
            let mut mixed = match body {
                Body::Multi(m) => MultiPart::mixed().multipart(m),
                Body::Single(s) => MultiPart::mixed().singlepart(s),
            };
            for a in &email.attachments {
                let ct = ContentType::parse(&a.content_type).map_err(|e| {
                    MailError::invalid(format!(
                        "attachment `{}`: content type `{}`: {e}",
                        a.filename, a.content_type
                    ))
                })?;
                mixed =
                    mixed.singlepart(lettre::message::Attachment::new(a.filename.clone()).body(a.bytes.clone(), ct));
            }
            b.multipart(mixed)
        }
        .map_err(|e| MailError::invalid(format!("cannot build the message: {e}")))?;
        Ok((message, message_id))
    }

    /// Sends `email`; `Ok` once the relay has accepted it.
    pub async fn send(&self, email: &Email) -> Result<SentMail, MailError> {
        let (message, message_id) = self.message(email)?;
        match self.transmit(message.envelope(), &message.formatted()).await {
            Ok(response) => {
                let text = response.message().collect::<Vec<_>>().join(" ");
                let response = format!("{} {text}", response.code());
                tracing::info!(target: "kairos::mail", message_id, recipients = email.to.len(), response, "email sent");
                Ok(SentMail { message_id, response })
            }
            Err(err) => {
                tracing::warn!(target: "kairos::mail", message_id, error = %err, "email not sent");
                Err(err)
            }
        }
    }

    /// The SMTP dialogue for one message. Every step before the content
    /// fails as [`MailError::Transient`] or [`MailError::Permanent`] (nothing
    /// was handed over); the content's own step can also end
    /// [`MailError::Unknown`].
    async fn transmit(&self, envelope: &Envelope, content: &[u8]) -> Result<Response, MailError> {
        let hello = ClientId::default();
        let wrapper = match &self.tls {
            Tls::Wrapper(params) => Some(params.clone()),
            _ => None,
        };
        let mut conn = self
            .step(AsyncSmtpConnection::connect_tokio1(
                (self.host.as_str(), self.port),
                Some(self.timeout),
                &hello,
                wrapper,
                None,
            ))
            .await?;
        let result = self.dialogue(&mut conn, &hello, envelope, content).await;
        if result.is_ok() {
            // QUIT, then close; the outcome is known, so how the goodbye goes
            // does not matter. After a failure the connection is just dropped
            // (closed): it may be mid-reply or, after a failed STARTTLS,
            // without a stream at all.
            let _ = tokio::time::timeout(self.timeout, conn.abort()).await;
        }
        result
    }

    async fn dialogue(
        &self,
        conn: &mut AsyncSmtpConnection,
        hello: &ClientId,
        envelope: &Envelope,
        content: &[u8],
    ) -> Result<Response, MailError> {
        if let Tls::Required(params) = &self.tls {
            self.step(conn.starttls(params.clone(), hello)).await?;
        }
        if let Some(credentials) = &self.credentials {
            self.step(conn.auth(DEFAULT_MECHANISMS, credentials)).await?;
        }
        let mut options = Vec::new();
        let non_ascii_address = envelope
            .from()
            .into_iter()
            .chain(envelope.to())
            .any(|a| !AsRef::<str>::as_ref(a).is_ascii());
        if non_ascii_address {
            if !conn.server_info().supports_feature(Extension::SmtpUtfEight) {
                return Err(MailError::invalid(
                    "an address is not ASCII and the relay does not support SMTPUTF8",
                ));
            }
            options.push(MailParameter::SmtpUtfEight);
        }
        if !content.is_ascii() {
            if !conn.server_info().supports_feature(Extension::EightBitMime) {
                return Err(MailError::invalid(
                    "the message is not ASCII and the relay does not support 8BITMIME",
                ));
            }
            options.push(MailParameter::Body(MailBodyParameter::EightBitMime));
        }
        self.step(conn.command(Mail::new(envelope.from().cloned(), options)))
            .await?;
        for to in envelope.to() {
            self.step(conn.command(Rcpt::new(to.clone(), vec![]))).await?;
        }
        self.step(conn.command(Data)).await?;
        // From here the relay may have the message: only an answer tells.
        match tokio::time::timeout(self.timeout, conn.message(content)).await {
            Ok(Ok(response)) => Ok(response),
            Ok(Err(e)) if e.is_transient() || e.is_permanent() => Err(classify(&e)),
            Ok(Err(e)) => Err(MailError::Unknown {
                reason: format!("after the message was sent: {e}"),
            }),
            Err(_) => Err(MailError::Unknown {
                reason: format!("no answer within {:?} after the message was sent", self.timeout),
            }),
        }
    }

    /// One step before the content, limited by `[smtp] timeout`.
    async fn step<T>(
        &self,
        fut: impl std::future::Future<Output = Result<T, lettre::transport::smtp::Error>>,
    ) -> Result<T, MailError> {
        match tokio::time::timeout(self.timeout, fut).await {
            Ok(result) => result.map_err(|e| classify(&e)),
            Err(_) => Err(MailError::Transient {
                reason: format!("no answer within {:?}", self.timeout),
                code: None,
            }),
        }
    }
}

enum Body {
    Multi(MultiPart),
    Single(SinglePart),
}

/// `<id@domain>` from `id@domain` or `<id@domain>`.
fn normalise_message_id(id: &str) -> Result<String, MailError> {
    let inner = id.trim().trim_start_matches('<').trim_end_matches('>');
    let ok = inner.contains('@')
        && !inner.starts_with('@')
        && !inner.ends_with('@')
        && inner
            .chars()
            .all(|c| c.is_ascii_graphic() && !matches!(c, '<' | '>' | '"' | '\\'));
    if ok {
        Ok(format!("<{inner}>"))
    } else {
        Err(MailError::invalid(format!(
            "message id `{id}` is not of the form <left@right> (ASCII, no spaces)"
        )))
    }
}

fn classify(e: &lettre::transport::smtp::Error) -> MailError {
    let code = e.status().and_then(|c| c.to_string().parse::<u16>().ok());
    let reason = e.to_string();
    if e.is_permanent() || e.is_client() {
        MailError::Permanent { reason, code }
    } else {
        MailError::Transient { reason, code }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> SmtpConfig {
        toml::from_str("host = \"127.0.0.1\"\ntls = \"none\"\nport = 2525\nfrom = \"Kairos <reports@kairos.test>\"\n")
            .unwrap()
    }

    #[test]
    fn config_defaults_and_validation_name_the_key() {
        let c = config();
        assert_eq!(c.validate(), Ok(()));
        let c: SmtpConfig = toml::from_str("host = \"smtp.example.com\"\nfrom = \"a@example.com\"\n").unwrap();
        assert_eq!((c.tls, c.port()), (TlsMode::Starttls, 587));
        let bad = |extra: &str| {
            toml::from_str::<SmtpConfig>(&format!(
                "host = \"smtp.example.com\"\nfrom = \"a@example.com\"\n{extra}"
            ))
            .unwrap()
            .validate()
            .unwrap_err()
            .0
        };
        assert_eq!(bad("username_env = \"U\"\n"), "password_env");
        assert_eq!(
            bad("username_env = \"U\"\npassword_env = \"P\"\ntls = \"none\"\n"),
            "tls"
        );
        assert_eq!(bad("port = 0\n"), "port");
        let e = toml::from_str::<SmtpConfig>("host = \"h\"\nfrom = \"not an address\"\n")
            .unwrap()
            .validate()
            .unwrap_err();
        assert_eq!(e.0, "from");
        assert!(toml::from_str::<SmtpConfig>("host = \"h\"\nfrom = \"a@b.c\"\npassword = \"x\"\n").is_err());
        assert!(toml::from_str::<SmtpConfig>("host = \"h\"\nfrom = \"a@b.c\"\ntls = \"ssl\"\n").is_err());
    }

    #[test]
    fn a_missing_credential_variable_is_named() {
        let mut c = config();
        c.username_env = Some("KAIROS_TEST_SMTP_USER".into());
        c.password_env = Some("KAIROS_TEST_SMTP_PASSWORD".into());
        let e = Mailer::from_config_with(&c, |v| (v == "KAIROS_TEST_SMTP_USER").then(|| "u".into())).unwrap_err();
        assert!(e.to_string().contains("KAIROS_TEST_SMTP_PASSWORD"), "{e}");
    }

    #[test]
    fn message_ids_are_normalised_and_checked() {
        assert_eq!(normalise_message_id("r-1@kairos").unwrap(), "<r-1@kairos>");
        assert_eq!(normalise_message_id("<r-1@kairos>").unwrap(), "<r-1@kairos>");
        assert!(normalise_message_id("no at sign").is_err());
        assert!(normalise_message_id("a b@c").is_err());
    }

    #[test]
    fn bad_input_is_permanent_before_any_connection() {
        let m = Mailer::from_config(&config()).unwrap();
        let base = Email {
            to: vec!["ana@example.com".into()],
            subject: "s".into(),
            text: "t".into(),
            ..Default::default()
        };
        let bad = [
            Email {
                to: vec![],
                ..base.clone()
            },
            Email {
                to: vec!["not an address".into()],
                ..base.clone()
            },
            Email {
                headers: vec![("Subject".into(), "x".into())],
                ..base.clone()
            },
            Email {
                headers: vec![("X-A".into(), "x\r\nBcc: evil@x".into())],
                ..base.clone()
            },
            Email {
                attachments: vec![Attachment {
                    filename: "a".into(),
                    content_type: "nonsense".into(),
                    bytes: vec![],
                }],
                ..base.clone()
            },
        ];
        for e in bad {
            assert!(
                matches!(m.message(&e), Err(MailError::Permanent { code: None, .. })),
                "{e:?}"
            );
        }
        let (msg, id) = m.message(&base).unwrap();
        assert!(id.ends_with("@kairos.test>"), "{id}");
        let raw = String::from_utf8(msg.formatted()).unwrap();
        assert!(raw.contains(&format!("Message-ID: {id}")), "{raw}");
    }
}
