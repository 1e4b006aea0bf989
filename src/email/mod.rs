//! Email: every message is a job (`email.send`, on the `email` queue), queued in the transaction
//! of the change that causes it and sent over SMTP with lettre (plain, STARTTLS or TLS, with
//! authentication, pooled connections). Off by default: the log then says what would have been
//! sent. What a message says is in `templates.rs`.

mod templates;

use std::sync::OnceLock;
use std::time::Duration;

use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use serde::{Deserialize, Serialize};
use sqlx::AnyConnection;

pub use templates::*;

use crate::app::AppState;
use crate::jobs::{ClaimedJob, JobError, Kind, NewJob, Queue};

/// How the connection to the SMTP server is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Security {
    /// Plain text (a relay on the same host, or tests).
    None,
    /// Plain, then upgraded with STARTTLS (required).
    Starttls,
    /// TLS from the first byte (SMTPS, usually port 465).
    Tls,
}

/// `[email]`.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmailConfig {
    pub enabled: bool,
    /// The sender, `Name <address>`.
    pub from: String,
    pub host: String,
    pub port: u16,
    pub security: Security,
    /// Empty: no authentication.
    pub username: String,
    pub password: String,
    /// Messages sent at once per node.
    pub workers: usize,
}

// The password is a secret: never print it.
impl std::fmt::Debug for EmailConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmailConfig")
            .field("enabled", &self.enabled)
            .field("from", &self.from)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("security", &self.security)
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

impl EmailConfig {
    pub fn validate(&self) -> Result<(), String> {
        if self.enabled && self.from.parse::<Mailbox>().is_err() {
            return Err(format!("email.from is not an address: {:?}", self.from));
        }
        if self.workers == 0 {
            return Err("email.workers must be at least 1".into());
        }
        Ok(())
    }
}

/// One message: plain text and its HTML twin.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Email {
    pub to: String,
    pub subject: String,
    pub text: String,
    pub html: String,
}

pub const SEND: Kind =
    Kind { name: "email.send", queue: Queue::Email, max_attempts: 8, run: |state, job| Box::pin(send_job(state, job)) };

/// Queues `email` in the caller's transaction; `dedup` makes a second queueing of the same
/// message (a retried handler) a no-op. Wake the runner after the commit.
pub async fn queue(conn: &mut AnyConnection, email: &Email, dedup: Option<String>) -> Result<(), sqlx::Error> {
    let mut job = NewJob::new(&SEND, email);
    if let Some(key) = dedup {
        job = job.dedup(key);
    }
    crate::jobs::enqueue(conn, job).await?;
    Ok(())
}

type Mailer = AsyncSmtpTransport<Tokio1Executor>;

/// This server's SMTP transport (its pool of connections), made at the first message.
#[derive(Default)]
pub struct Transport {
    mailer: OnceLock<Mailer>,
}

fn mailer<'a>(transport: &'a Transport, config: &EmailConfig) -> Result<&'a Mailer, JobError> {
    if let Some(mailer) = transport.mailer.get() {
        return Ok(mailer);
    }
    let builder = match config.security {
        Security::None => Mailer::builder_dangerous(&config.host),
        Security::Starttls => {
            Mailer::starttls_relay(&config.host).map_err(|e| JobError::Fail(format!("email.host: {e}")))?
        }
        Security::Tls => Mailer::relay(&config.host).map_err(|e| JobError::Fail(format!("email.host: {e}")))?,
    };
    let mut builder = builder.port(config.port).timeout(Some(Duration::from_secs(20)));
    if !config.username.is_empty() {
        builder = builder.credentials(Credentials::new(config.username.clone(), config.password.clone()));
    }
    Ok(transport.mailer.get_or_init(|| builder.build()))
}

async fn send_job(state: AppState, job: ClaimedJob) -> Result<(), JobError> {
    let email: Email = job.payload()?;
    let config = &state.config().email;
    if !config.enabled {
        tracing::info!(to = %email.to, subject = %email.subject, text = %email.text,
            "email not sent (email.enabled = false)");
        return Ok(());
    }
    let from: Mailbox = config.from.parse().map_err(|e| JobError::Fail(format!("email.from: {e}")))?;
    let to: Mailbox = email.to.parse().map_err(|e| JobError::Fail(format!("recipient {:?}: {e}", email.to)))?;
    let message = Message::builder()
        .from(from)
        .to(to)
        .subject(&email.subject)
        .multipart(MultiPart::alternative_plain_html(email.text.clone(), email.html.clone()))
        .map_err(|e| JobError::Fail(format!("building the message: {e}")))?;
    match mailer(state.mail_transport(), config)?.send(message).await {
        Ok(_) => {
            metrics::counter!("aether_emails_total", "outcome" => "sent").increment(1);
            tracing::info!(to = %email.to, subject = %email.subject, "email sent");
            Ok(())
        }
        Err(error) if error.is_permanent() => {
            metrics::counter!("aether_emails_total", "outcome" => "refused").increment(1);
            Err(JobError::Fail(format!("the SMTP server refused it: {error}")))
        }
        Err(error) => Err(JobError::Retry(format!("SMTP: {error}"))),
    }
}
