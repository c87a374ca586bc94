//! Alerts by e-mail: one message over SMTP, upgraded with STARTTLS unless the plan says not
//! to, with credentials when given. The password is never put in an error.

use std::time::Duration;

use lettre::message::Mailbox;
use lettre::transport::smtp::authentication::Credentials;
use lettre::{Message, SmtpTransport, Transport};

use crate::{Result, ServiceError};

#[derive(Debug, Clone)]
pub struct Mail<'a> {
    /// `host:port`.
    pub server: &'a str,
    pub starttls: bool,
    pub from: &'a str,
    pub to: &'a [String],
    pub username: Option<&'a str>,
    pub password: Option<&'a str>,
    pub subject: &'a str,
    pub body: &'a str,
}

pub fn send_mail(mail: &Mail<'_>) -> Result<()> {
    let failed = |what: &str, e: &dyn std::fmt::Display| {
        // The SMTP server's own words are in `e`.
        let e = crate::escape_untrusted(e.to_string().as_bytes(), crate::Newlines::Escape);
        ServiceError::Io(format!("mail via {}: {what}: {e}", mail.server))
    };
    let (host, port) = match mail.server.rsplit_once(':') {
        Some((host, port)) => (
            host,
            port.parse::<u16>()
                .map_err(|e| failed("the port is not a number", &e))?,
        ),
        None => (mail.server, 587),
    };
    let mailbox = |address: &str| -> Result<Mailbox> {
        address
            .parse()
            .map_err(|e| failed(&format!("`{address}` is not an address"), &e))
    };
    let mut message = Message::builder()
        .from(mailbox(mail.from)?)
        .subject(mail.subject);
    for to in mail.to {
        message = message.to(mailbox(to)?);
    }
    let message = message
        .body(mail.body.to_string())
        .map_err(|e| failed("building the message", &e))?;
    let builder = if mail.starttls {
        SmtpTransport::starttls_relay(host).map_err(|e| failed("STARTTLS", &e))?
    } else {
        SmtpTransport::builder_dangerous(host)
    };
    let mut builder = builder.port(port).timeout(Some(Duration::from_secs(15)));
    if let (Some(user), Some(password)) = (mail.username, mail.password) {
        builder = builder.credentials(Credentials::new(user.to_string(), password.to_string()));
    }
    builder
        .build()
        .send(&message)
        .map_err(|e| failed("sending", &e))?;
    Ok(())
}
