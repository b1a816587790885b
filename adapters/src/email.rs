//! Sending e-mail: tickets and receipts of paid events, partners' monthly statements.
//!
//! Over SMTP with `lettre` (tokio, rustls on `ring`, webpki roots): `SMTP_URL` is lettre's
//! connection URL, `smtp://host:port` (plain; `?tls=required` for STARTTLS) or
//! `smtps://user:password@host:465` (TLS from the first byte). Without `SMTP_URL` the
//! [`LogEmail`] sender prints the message and accepts it, as `LogSms` does for SMS; the
//! caller records every message in `notifications` either way.

use async_trait::async_trait;
use lettre::{
    AsyncSmtpTransport, AsyncTransport, Tokio1Executor,
    message::{Attachment as MailAttachment, Mailbox, MultiPart, SinglePart, header::ContentType},
};
use std::time::Duration;

/// A file sent along (a statement's CSV).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attachment {
    pub filename: String,
    /// A MIME type, e.g. `text/csv; charset=utf-8`.
    pub content_type: String,
    pub content: Vec<u8>,
}

/// One message to one address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmailMessage {
    pub to: String,
    pub subject: String,
    /// Plain text (UTF-8).
    pub text: String,
    pub attachments: Vec<Attachment>,
    /// The `Message-ID` (without angle brackets): derived from the message's dedupe key, so
    /// a duplicate that slips through is recognisable as one by the receiving side.
    pub message_id: Option<String>,
}

/// Proof that the server accepted a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmailReceipt {
    /// The server's reply (code and text), for the notification record.
    pub reply: String,
}

/// Why a message was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EmailError {
    /// Worth retrying later: the server is unreachable, timed out, or answered 4xx.
    #[error("mail server unavailable: {0}")]
    Transient(String),
    /// Will fail again: a malformed address, or the server refused (5xx).
    #[error("e-mail rejected: {0}")]
    Permanent(String),
}

/// Sends e-mail.
#[async_trait]
pub trait EmailSender: Send + Sync {
    /// The provider's name, recorded with every message (`smtp` or `log`).
    fn name(&self) -> &'static str;
    async fn send(&self, message: &EmailMessage) -> Result<EmailReceipt, EmailError>;
}

/// Development sender when `SMTP_URL` is unset: prints the message (without attachments'
/// content) on standard output and accepts it.
#[derive(Debug, Default, Clone)]
pub struct LogEmail;

#[async_trait]
impl EmailSender for LogEmail {
    fn name(&self) -> &'static str {
        "log"
    }

    async fn send(&self, message: &EmailMessage) -> Result<EmailReceipt, EmailError> {
        let files: Vec<&str> = message
            .attachments
            .iter()
            .map(|a| a.filename.as_str())
            .collect();
        println!(
            "[email:log] to {}: {}\n{}\n(attachments: {files:?})",
            message.to, message.subject, message.text
        );
        Ok(EmailReceipt {
            reply: "logged".to_owned(),
        })
    }
}

/// An SMTP server (`SMTP_URL`).
#[derive(Clone)]
pub struct SmtpEmail {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

impl std::fmt::Debug for SmtpEmail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The transport holds the credentials: never printed.
        f.debug_struct("SmtpEmail")
            .field("from", &self.from.to_string())
            .finish_non_exhaustive()
    }
}

/// `SMTP_URL` or `SMTP_FROM` cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SmtpConfigError {
    /// The URL is not an `smtp://` or `smtps://` URL lettre understands.
    #[error("SMTP_URL is not a valid smtp:// or smtps:// URL: {0}")]
    Url(String),
    /// The sender is not an address (`Name <addr@host>` or `addr@host`).
    #[error("SMTP_FROM is not an e-mail address: {0}")]
    From(String),
}

impl SmtpEmail {
    /// A sender through the server at `url` (lettre's connection URL), as `from`.
    pub fn new(url: &str, from: &str) -> Result<Self, SmtpConfigError> {
        crate::install_tls_provider();
        let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(url)
            // lettre's error would print the URL (and its password): say only what is wrong.
            .map_err(|e| SmtpConfigError::Url(without_credentials(&e.to_string())))?
            .timeout(Some(Duration::from_secs(20)))
            .build();
        let from = from
            .parse()
            .map_err(|e: lettre::address::AddressError| SmtpConfigError::From(e.to_string()))?;
        Ok(Self { transport, from })
    }
}

fn without_credentials(text: &str) -> String {
    text.split_whitespace()
        .map(|word| match word.split_once("://") {
            Some((scheme, rest)) if rest.contains('@') => {
                format!("{scheme}://***@{}", rest.rsplit_once('@').unwrap().1)
            }
            _ => word.to_owned(),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The MIME message of `message` from `from`.
pub fn build(from: &Mailbox, message: &EmailMessage) -> Result<lettre::Message, EmailError> {
    let to: Mailbox = message
        .to
        .parse()
        .map_err(|e| EmailError::Permanent(format!("bad recipient address: {e}")))?;
    let builder = lettre::Message::builder()
        .from(from.clone())
        .to(to)
        .subject(message.subject.clone())
        .message_id(message.message_id.as_ref().map(|id| format!("<{id}>")));
    let text = SinglePart::plain(message.text.clone());
    let built = if message.attachments.is_empty() {
        builder.singlepart(text)
    } else {
        let mut parts = MultiPart::mixed().singlepart(text);
        for file in &message.attachments {
            let content_type = ContentType::parse(&file.content_type)
                .map_err(|e| EmailError::Permanent(format!("bad attachment type: {e}")))?;
            parts = parts.singlepart(
                MailAttachment::new(file.filename.clone()).body(file.content.clone(), content_type),
            );
        }
        builder.multipart(parts)
    };
    built.map_err(|e| EmailError::Permanent(format!("message not built: {e}")))
}

#[async_trait]
impl EmailSender for SmtpEmail {
    fn name(&self) -> &'static str {
        "smtp"
    }

    async fn send(&self, message: &EmailMessage) -> Result<EmailReceipt, EmailError> {
        let mail = build(&self.from, message)?;
        match self.transport.send(mail).await {
            Ok(response) => Ok(EmailReceipt {
                reply: crate::excerpt(
                    &format!(
                        "{} {}",
                        response.code(),
                        response.message().collect::<Vec<_>>().join(" ")
                    ),
                    200,
                ),
            }),
            Err(e) if e.is_permanent() => Err(EmailError::Permanent(e.to_string())),
            Err(e) => Err(EmailError::Transient(e.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(attachments: Vec<Attachment>) -> EmailMessage {
        EmailMessage {
            to: "anna@example.test".to_owned(),
            subject: "Билет: Ужин с шеф-поваром".to_owned(),
            text: "Оплачено 1500.00 ₽".to_owned(),
            attachments,
            message_id: Some("ticket.1@svoy-krug".to_owned()),
        }
    }

    #[test]
    fn a_message_with_an_attachment_is_multipart_with_the_file() {
        let from: Mailbox = "Свой Круг <noreply@svoy-krug.test>".parse().unwrap();
        let csv = Attachment {
            filename: "statement-2026-11.csv".to_owned(),
            content_type: "text/csv; charset=utf-8".to_owned(),
            content: b"period,net\n2026-11,350.00\n".to_vec(),
        };
        let raw =
            String::from_utf8(build(&from, &message(vec![csv])).unwrap().formatted()).unwrap();
        assert!(raw.contains("multipart/mixed"), "{raw}");
        assert!(raw.contains("filename=\"statement-2026-11.csv\""), "{raw}");
        assert!(raw.contains("Message-ID: <ticket.1@svoy-krug>"), "{raw}");
        assert!(raw.contains("To: anna@example.test"), "{raw}");
    }

    #[test]
    fn a_bad_recipient_is_permanent() {
        let from: Mailbox = "noreply@svoy-krug.test".parse().unwrap();
        let mut bad = message(vec![]);
        bad.to = "not an address".to_owned();
        assert!(matches!(build(&from, &bad), Err(EmailError::Permanent(_))));
    }

    #[test]
    fn a_bad_url_never_shows_its_password() {
        let err = SmtpEmail::new("smtpx://user:hunter2@mail.example:465", "a@b.test").unwrap_err();
        assert!(!err.to_string().contains("hunter2"), "{err}");
    }

    #[tokio::test]
    async fn an_unreachable_server_is_transient() {
        // Port 9 (discard) on loopback: nothing listens there in tests.
        let sender = SmtpEmail::new("smtp://127.0.0.1:9", "noreply@svoy-krug.test").unwrap();
        let err = sender.send(&message(vec![])).await.unwrap_err();
        assert!(matches!(err, EmailError::Transient(_)), "{err:?}");
    }
}
