//! Asking the authoritative server what a record set holds.
//!
//! Always the authoritative server itself, never a recursive resolver: a resolver answers
//! from its cache, which shows the past for up to a TTL after a switch. An answer without the
//! authoritative flag (a referral, a cached answer) is therefore an error, not a value.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, MessageType, Query, ResponseCode};
use hickory_proto::rr::Name;

use crate::error::{DnsError, describe};
use crate::record::{RecordType, canonical_values, parse_fqdn, sort_canonical, value_text};
use crate::transport::exchange_tcp;

/// How long [`confirm`] waits between two queries.
const CONFIRM_INTERVAL: Duration = Duration::from_millis(500);

/// What the authoritative server answered for a record set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordSetAnswer {
    /// The values in canonical form (see [`canonical_values`]); empty when the record set
    /// does not exist.
    pub values: Vec<String>,
    /// The record set's TTL in seconds, as the server gives it to resolvers: how long they may
    /// keep serving these values after a switch. `None` when the record set does not exist.
    pub ttl: Option<u32>,
}

/// The values of the record set `name` `record_type`, asked of the authoritative `server`
/// directly, in canonical form (sorted, empty when there is none). One exchange, bounded by
/// `timeout`. [`query_record_set`] also gives the TTL.
pub fn query_records(
    server: SocketAddr,
    name: &str,
    record_type: RecordType,
    timeout: Duration,
) -> Result<Vec<String>, DnsError> {
    query_record_set(server, name, record_type, timeout).map(|answer| answer.values)
}

/// The record set `name` `record_type` with its TTL, asked of the authoritative `server`
/// directly. One exchange, bounded by `timeout`.
pub fn query_record_set(
    server: SocketAddr,
    name: &str,
    record_type: RecordType,
    timeout: Duration,
) -> Result<RecordSetAnswer, DnsError> {
    let name = parse_fqdn(name, "record name")?;
    query_name(
        server,
        &name,
        record_type,
        Instant::now() + timeout,
        timeout,
    )
}

/// Asks the authoritative `server` for `name` `record_type` until it answers exactly the
/// `expected` values (in any order and form: they are compared canonically), and returns
/// that answer. Each query is bounded by `timeout`; the whole wait by `overall_deadline`,
/// counted from the call, after which the error says what the server answered last (or why
/// it did not answer).
pub fn confirm(
    server: SocketAddr,
    name: &str,
    record_type: RecordType,
    expected: &[String],
    timeout: Duration,
    overall_deadline: Duration,
) -> Result<RecordSetAnswer, DnsError> {
    let started = Instant::now();
    let give_up_at = started + overall_deadline;
    let fqdn = parse_fqdn(name, "record name")?;
    let expected = canonical_values(record_type, expected)?;
    // The last values answered are what the operator needs; an error is reported only when no
    // query was ever answered (a query cut short by the deadline must not hide an answer).
    let mut last_values: Option<Vec<String>> = None;
    let mut last_error = String::new();
    loop {
        let query_timeout = timeout.min(give_up_at.saturating_duration_since(Instant::now()));
        let query_deadline = Instant::now() + query_timeout;
        match query_name(server, &fqdn, record_type, query_deadline, query_timeout) {
            Ok(answer) if answer.values == expected => {
                tracing::debug!(
                    %server, name = %fqdn, %record_type, values = %describe(&answer.values),
                    "confirmed"
                );
                return Ok(answer);
            }
            Ok(answer) => {
                tracing::debug!(
                    %server, name = %fqdn, %record_type, values = %describe(&answer.values),
                    "not confirmed yet"
                );
                last_values = Some(answer.values);
            }
            Err(error) => {
                tracing::debug!(%server, name = %fqdn, %record_type, %error, "not confirmed yet");
                last_error = error.to_string();
            }
        }
        let now = Instant::now();
        if now >= give_up_at {
            return Err(DnsError::NotConfirmed {
                server,
                name: fqdn.to_ascii(),
                record_type,
                expected,
                waited: now - started,
                last: last_values.as_deref().map_or(last_error, describe),
            });
        }
        std::thread::sleep(CONFIRM_INTERVAL.min(give_up_at - now));
    }
}

/// One query for an already parsed name; the crate's single way of reading a record set.
pub(crate) fn query_name(
    server: SocketAddr,
    name: &Name,
    record_type: RecordType,
    deadline: Instant,
    timeout: Duration,
) -> Result<RecordSetAnswer, DnsError> {
    let mut request = Message::query();
    request.metadata.recursion_desired = false;
    request.add_query(Query::query(name.clone(), record_type.to_hickory()));
    let encoded = request.to_vec().map_err(|error| {
        DnsError::InvalidInput(format!("cannot encode a query for {name}: {error}"))
    })?;
    let answer = exchange_tcp(server, &encoded, deadline, timeout)?;
    let answer = decode_answer(server, request.metadata.id, &answer)?;
    record_set_of(server, name, record_type, &answer)
}

/// Decodes an answer and checks that it answers the request with id `request_id`.
pub(crate) fn decode_answer(
    server: SocketAddr,
    request_id: u16,
    bytes: &[u8],
) -> Result<Message, DnsError> {
    let message = Message::from_vec(bytes).map_err(|error| DnsError::Malformed {
        server,
        detail: error.to_string(),
    })?;
    if message.metadata.message_type != MessageType::Response || message.metadata.id != request_id {
        return Err(DnsError::Malformed {
            server,
            detail: format!(
                "it is not the answer to request {request_id} (id {}, {:?})",
                message.metadata.id, message.metadata.message_type
            ),
        });
    }
    Ok(message)
}

/// The record set `name` `record_type` out of an authoritative answer.
fn record_set_of(
    server: SocketAddr,
    name: &Name,
    record_type: RecordType,
    answer: &Message,
) -> Result<RecordSetAnswer, DnsError> {
    let not_authoritative = |detail: &str| DnsError::NotAuthoritative {
        server,
        name: name.to_ascii(),
        detail: detail.to_owned(),
    };
    match answer.metadata.response_code {
        ResponseCode::NoError | ResponseCode::NXDomain => {}
        ResponseCode::Refused => {
            return Err(not_authoritative(
                "it refused the query (it serves no zone holding this name, or does not answer \
                 this client)",
            ));
        }
        rcode => {
            return Err(DnsError::ServerError {
                server,
                stage: "querying the record set",
                rcode: rcode.to_string(),
            });
        }
    }
    if !answer.metadata.authoritative {
        return Err(not_authoritative(
            "it answered without authority (a referral or a cached answer): ask the zone's \
             primary server",
        ));
    }
    let wanted_type = record_type.to_hickory();
    let mut values = Vec::new();
    let mut ttl: Option<u32> = None;
    for record in &answer.answers {
        if record.record_type() != wanted_type || record.name != *name {
            continue; // for example the CNAME a name of another type stands behind
        }
        if let Some(text) = value_text(record_type, &record.data) {
            values.push(text);
            ttl = Some(ttl.map_or(record.ttl, |seen| seen.min(record.ttl)));
        }
    }
    sort_canonical(record_type, &mut values);
    Ok(RecordSetAnswer { values, ttl })
}
