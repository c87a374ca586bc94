//! The one error type of the crate.
//!
//! Each variant names the server (and the record set, where there is one) and says what to do
//! next, because these errors are read by an operator in the middle of a failover. None of
//! them ever holds a TSIG secret.

use std::net::SocketAddr;
use std::time::Duration;

use crate::record::RecordType;

#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    /// A name, value or setting of the request is unusable; nothing was sent.
    #[error("{0}")]
    InvalidInput(String),

    /// The TSIG secret is not base64; nothing was sent. The secret itself is not shown.
    #[error(
        "the secret of TSIG key `{key_name}` is not valid base64 (as in BIND's `secret \"...\";`)"
    )]
    InvalidTsigSecret { key_name: String },

    /// No connection could be made to the server (refused, unreachable network, ...).
    #[error("cannot reach the DNS server {server}: {source}")]
    Unreachable {
        server: SocketAddr,
        #[source]
        source: std::io::Error,
    },

    /// The server did not answer in time.
    #[error("the DNS server {server} did not answer within {} (while {stage})", seconds(.timeout))]
    TimedOut {
        server: SocketAddr,
        timeout: Duration,
        stage: &'static str,
    },

    /// The connection broke during an exchange.
    #[error("the connection to the DNS server {server} failed while {stage}: {source}")]
    Connection {
        server: SocketAddr,
        stage: &'static str,
        #[source]
        source: std::io::Error,
    },

    /// The server's answer could not be decoded, or answers another question.
    #[error("the DNS server {server} sent an unusable answer: {detail}")]
    Malformed { server: SocketAddr, detail: String },

    /// The server refused the request's TSIG signature (NOTAUTH with BADSIG or BADKEY): the key
    /// is unknown to it or the secret differs. The server changed nothing.
    #[error(
        "the server {server} refused the TSIG signature: check the key name, algorithm and secret \
         (key `{key_name}`, {algorithm}; the server said {detail}); nothing was changed"
    )]
    TsigRefused {
        server: SocketAddr,
        key_name: String,
        algorithm: String,
        detail: String,
    },

    /// The server refused the signature's time (BADTIME): the clocks differ by more than the
    /// allowed five minutes.
    #[error(
        "the server {server} refused the TSIG signature's time (BADTIME): the clocks of this \
         machine and of the server differ by more than 5 minutes; nothing was changed"
    )]
    TsigClockSkew { server: SocketAddr },

    /// The answer to a signed update failed TSIG verification: it may not come from the server.
    #[error(
        "the answer of {server} to the update failed TSIG verification ({detail}): it may not \
         come from the server, and the update may or may not have been applied; query the \
         server before retrying"
    )]
    ResponseNotAuthentic { server: SocketAddr, detail: String },

    /// The update's prerequisite failed (NXRRSET/YXRRSET): the record set does not hold what was
    /// expected, so the server changed nothing.
    #[error(
        "the server {server} refused to switch {name} {record_type}: the record set is not what \
         was expected (the server holds {}, expected {}); nothing was changed",
        describe_maybe(.holds_now.as_deref()),
        describe(.expected)
    )]
    PrerequisiteFailed {
        server: SocketAddr,
        name: String,
        record_type: RecordType,
        expected: Vec<String>,
        /// What a query right after the refusal answered; `None` when that query failed too.
        holds_now: Option<Vec<String>>,
    },

    /// The server refused the update itself (REFUSED): its `allow-update` or `update-policy`
    /// does not grant it.
    #[error(
        "the server {server} refused the update of zone {zone} (REFUSED): does its \
         allow-update or update-policy grant this key (or this address) the right to change \
         {name} {record_type}?"
    )]
    UpdateRefused {
        server: SocketAddr,
        zone: String,
        name: String,
        record_type: RecordType,
    },

    /// The server is not authoritative for the zone or name (NOTAUTH, NOTZONE, REFUSED for a
    /// query, or an answer without the authoritative flag).
    #[error("the DNS server {server} is not authoritative for {name}: {detail}")]
    NotAuthoritative {
        server: SocketAddr,
        name: String,
        detail: String,
    },

    /// The server answered with another error code.
    #[error("the DNS server {server} answered {rcode} while {stage}")]
    ServerError {
        server: SocketAddr,
        stage: &'static str,
        rcode: String,
    },

    /// The server accepted the update, yet the record set does not hold the new values (BIND,
    /// for instance, silently ignores a CNAME added next to other data).
    #[error(
        "the server {server} accepted the update of {name} {record_type}, but the record set now \
         holds {} instead of {}",
        describe(.holds_now),
        describe(.expected)
    )]
    UpdateNotApplied {
        server: SocketAddr,
        name: String,
        record_type: RecordType,
        expected: Vec<String>,
        holds_now: Vec<String>,
    },

    /// The server did not answer the expected record set before the deadline.
    #[error(
        "the DNS server {server} did not answer {} for {name} {record_type} within {}; its last \
         answer: {last}",
        describe(.expected),
        seconds(.waited)
    )]
    NotConfirmed {
        server: SocketAddr,
        name: String,
        record_type: RecordType,
        expected: Vec<String>,
        waited: Duration,
        /// The last values answered, or the last error when no answer came at all.
        last: String,
    },
}

/// A record set as an operator reads it: `[192.0.2.10, 192.0.2.11]`, or `no record`.
pub(crate) fn describe(values: &[String]) -> String {
    if values.is_empty() {
        "no record".to_owned()
    } else {
        format!("[{}]", values.join(", "))
    }
}

fn describe_maybe(values: Option<&[String]>) -> String {
    values.map_or_else(|| "(could not be read back)".to_owned(), describe)
}

/// A duration as an operator reads it: `5s`, `0.3s`, `1.2s`.
fn seconds(duration: &Duration) -> String {
    let text = format!("{:.1}", duration.as_secs_f64());
    format!("{}s", text.strip_suffix(".0").unwrap_or(&text))
}
