//! The switch itself: one RFC 2136 update, conditional on what the record set holds.
//!
//! The update message (built by hickory-proto's `update_message`) has three parts, applied by
//! the server all together or not at all:
//!
//! 1. a prerequisite: the record set holds exactly the old values (RFC 2136 §2.4.2, "RRset
//!    exists, value dependent"), or, when no old value is given, that it does not exist
//!    (§2.4.3);
//! 2. the deletion of each old value (§2.5.4);
//! 3. the addition of each new value with the new TTL (§2.5.1).
//!
//! When the prerequisite fails the server answers NXRRSET or YXRRSET and changes nothing; the
//! error then says what the server holds instead. Before sending, the record set is read: if it
//! already holds the new values the switch is done already (a resumed runbook) and nothing is
//! sent. After the server accepts, it is read again, since a server may accept an update it
//! silently ignores (BIND does for a CNAME next to other data).

use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hickory_proto::op::{Message, ResponseCode, update_message};
use hickory_proto::rr::rdata::tsig::TsigError;
use hickory_proto::rr::{Name, RData, RecordSet, TSigner};

use crate::error::{DnsError, describe};
use crate::query::{RecordSetAnswer, decode_answer, query_name};
use crate::record::{RecordType, parse_fqdn, parse_values, value_text};
use crate::transport::exchange_tcp;
use crate::tsig::TsigKey;

/// A switch of one record set at its authoritative server: from exactly `old` to `new`.
#[derive(Clone, Debug)]
pub struct DnsSwitch {
    /// The zone's primary (authoritative) server, which accepts dynamic updates.
    pub server: SocketAddr,
    /// The zone holding the record set, e.g. `example.com`.
    pub zone: String,
    /// The record set's fully qualified name, e.g. `app.example.com`; it must be in `zone`.
    pub name: String,
    pub record_type: RecordType,
    /// The TTL of the new record set, in seconds.
    pub ttl: u32,
    /// The key that signs the update; `None` sends it unsigned (for servers that allow updates
    /// by address).
    pub tsig: Option<TsigKey>,
    /// What the record set must hold now for the switch to happen, in any order; empty means
    /// it must not exist.
    pub old: Vec<String>,
    /// What the record set holds after the switch, in any order; never empty.
    pub new: Vec<String>,
    /// The bound on the whole switch: reading, updating and reading back.
    pub timeout: Duration,
}

/// What [`switch_dns`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SwitchOutcome {
    /// The server replaced the record set. `before.ttl` is the TTL resolvers may have cached
    /// the old values with (see [`crate::ttl_warning`]).
    Switched {
        before: RecordSetAnswer,
        after: RecordSetAnswer,
    },
    /// The record set already held the new values (whatever its TTL), so no update was sent.
    AlreadySwitched { current: RecordSetAnswer },
}

impl SwitchOutcome {
    /// What the record set holds now.
    pub fn current(&self) -> &RecordSetAnswer {
        match self {
            Self::Switched { after, .. } => after,
            Self::AlreadySwitched { current } => current,
        }
    }
}

/// Switches the record set `switch.name` `switch.record_type` from exactly `switch.old` to
/// `switch.new` with one atomic, TSIG-signed RFC 2136 update; or reports
/// [`SwitchOutcome::AlreadySwitched`] without sending anything when it holds the new values
/// already. Everything is bounded by `switch.timeout`.
///
/// After an error the record set is as it was, except in three cases where the update may
/// have been applied: [`DnsError::ResponseNotAuthentic`], [`DnsError::UpdateNotApplied`] (the
/// server accepted it), and a timeout or broken connection while waiting for the answer to the
/// update. Re-running the switch is safe in every case: the prerequisite and the
/// already-switched check make it idempotent.
pub fn switch_dns(switch: &DnsSwitch) -> Result<SwitchOutcome, DnsError> {
    let deadline = Instant::now() + switch.timeout;
    let prepared = PreparedSwitch::new(switch)?;
    let server = switch.server;
    let read = |deadline| {
        query_name(
            server,
            &prepared.name,
            switch.record_type,
            deadline,
            switch.timeout,
        )
    };

    let before = read(deadline)?;
    if before.values == prepared.new_values {
        tracing::info!(
            %server, name = %prepared.name, record_type = %switch.record_type,
            values = %describe(&before.values),
            "the record set already holds the new values; no update sent"
        );
        return Ok(SwitchOutcome::AlreadySwitched { current: before });
    }

    tracing::info!(
        %server, zone = %prepared.zone, name = %prepared.name, record_type = %switch.record_type,
        from = %describe(&prepared.old_values), to = %describe(&prepared.new_values),
        holds = %describe(&before.values), signed = prepared.signer.is_some(),
        "sending the DNS update"
    );
    let mut request = prepared.update_message(switch.ttl);
    let verifier = match &prepared.signer {
        Some(signer) => request
            .finalize(signer, unix_time_now())
            .map_err(|error| DnsError::InvalidInput(format!("cannot sign the update: {error}")))?,
        None => None,
    };
    let encoded = request.to_vec().map_err(|error| {
        DnsError::InvalidInput(format!(
            "cannot encode the update of {}: {error}",
            prepared.name
        ))
    })?;
    let answer_bytes = exchange_tcp(server, &encoded, deadline, switch.timeout)?;
    let answer = decode_answer(server, request.metadata.id, &answer_bytes)?;

    if let Some(signer) = &prepared.signer {
        check_tsig(server, signer, &answer, verifier, &answer_bytes, switch)?;
    }
    match answer.metadata.response_code {
        ResponseCode::NoError => {}
        ResponseCode::NXRRSet | ResponseCode::YXRRSet => {
            return Err(DnsError::PrerequisiteFailed {
                server,
                name: prepared.name.to_ascii(),
                record_type: switch.record_type,
                expected: prepared.old_values.clone(),
                holds_now: read(deadline).ok().map(|answer| answer.values),
            });
        }
        ResponseCode::Refused => {
            return Err(DnsError::UpdateRefused {
                server,
                zone: prepared.zone.to_ascii(),
                name: prepared.name.to_ascii(),
                record_type: switch.record_type,
            });
        }
        rcode @ (ResponseCode::NotAuth | ResponseCode::NotZone) => {
            return Err(DnsError::NotAuthoritative {
                server,
                name: prepared.name.to_ascii(),
                detail: format!(
                    "it answered {rcode} to an update of zone {}: send updates to the zone's \
                     primary server, and check that the zone is {}",
                    prepared.zone, prepared.zone
                ),
            });
        }
        rcode => {
            return Err(DnsError::ServerError {
                server,
                stage: "updating the zone",
                rcode: rcode.to_string(),
            });
        }
    }

    let after = read(deadline)?;
    if after.values != prepared.new_values {
        return Err(DnsError::UpdateNotApplied {
            server,
            name: prepared.name.to_ascii(),
            record_type: switch.record_type,
            expected: prepared.new_values,
            holds_now: after.values,
        });
    }
    tracing::info!(
        %server, name = %prepared.name, record_type = %switch.record_type,
        values = %describe(&after.values), "the DNS record set was switched"
    );
    Ok(SwitchOutcome::Switched { before, after })
}

/// A [`DnsSwitch`] with every name, value and key parsed: all input errors come out before
/// anything is sent.
struct PreparedSwitch {
    zone: Name,
    name: Name,
    record_type: RecordType,
    old: Vec<RData>,
    new: Vec<RData>,
    old_values: Vec<String>,
    new_values: Vec<String>,
    signer: Option<TSigner>,
}

impl PreparedSwitch {
    fn new(switch: &DnsSwitch) -> Result<Self, DnsError> {
        let zone = parse_fqdn(&switch.zone, "zone")?;
        let name = parse_fqdn(&switch.name, "record name")?;
        if !zone.zone_of(&name) {
            return Err(DnsError::InvalidInput(format!(
                "the record name {name} is not inside the zone {zone}"
            )));
        }
        let record_type = switch.record_type;
        let old = parse_values(record_type, &switch.old)?;
        let new = parse_values(record_type, &switch.new)?;
        if new.is_empty() {
            return Err(DnsError::InvalidInput(format!(
                "no new value for {name} {record_type}: a switch must send users somewhere"
            )));
        }
        if record_type == RecordType::Cname && (old.len() > 1 || new.len() > 1) {
            return Err(DnsError::InvalidInput(format!(
                "{name} CNAME: a CNAME record set holds exactly one name, not several"
            )));
        }
        let texts = |values: &[RData]| {
            values
                .iter()
                .filter_map(|data| value_text(record_type, data))
                .collect::<Vec<_>>()
        };
        Ok(Self {
            old_values: texts(&old),
            new_values: texts(&new),
            signer: switch.tsig.as_ref().map(TsigKey::signer).transpose()?,
            zone,
            name,
            record_type,
            old,
            new,
        })
    }

    /// The unsigned update: a compare-and-swap from the old record set, or a creation
    /// conditional on its absence when there is no old value.
    fn update_message(&self, ttl: u32) -> Message {
        let new_set = self.record_set(ttl, &self.new);
        if self.old.is_empty() {
            update_message::create(new_set, self.zone.clone(), false)
        } else {
            let old_set = self.record_set(0, &self.old);
            update_message::compare_and_swap(old_set, new_set, self.zone.clone(), false)
        }
    }

    fn record_set(&self, ttl: u32, values: &[RData]) -> RecordSet {
        let mut set = RecordSet::with_ttl(self.name.clone(), self.record_type.to_hickory(), ttl);
        for value in values {
            set.add_rdata(value.clone());
        }
        set
    }
}

/// Checks the TSIG of the answer to a signed update: a TSIG error from the server (its refusal
/// of our signature) or an answer whose own signature does not verify is an error.
fn check_tsig(
    server: SocketAddr,
    signer: &TSigner,
    answer: &Message,
    verifier: Option<hickory_proto::rr::TSigVerifier>,
    answer_bytes: &[u8],
    switch: &DnsSwitch,
) -> Result<(), DnsError> {
    let rcode = answer.metadata.response_code;
    let refused = |detail: String| DnsError::TsigRefused {
        server,
        key_name: signer.signer_name().to_ascii(),
        algorithm: switch
            .tsig
            .as_ref()
            .map_or_else(String::new, |key| key.algorithm.to_string()),
        detail,
    };
    // RFC 8945 §5.3.2: a refused signature is answered NOTAUTH with an *unsigned* TSIG record
    // carrying the reason, so it is read before (and instead of) verifying.
    match answer.signature().and_then(|tsig| tsig.data.error) {
        Some(TsigError::BadTime) => return Err(DnsError::TsigClockSkew { server }),
        Some(error) => return Err(refused(format!("{rcode}, {}", tsig_error_text(error)))),
        None => {}
    }
    let Some(mut verifier) = verifier else {
        return Ok(());
    };
    match verifier.verify(answer_bytes) {
        Ok(_) => Ok(()),
        Err(_) if rcode == ResponseCode::NotAuth => Err(refused(format!("{rcode}, unsigned"))),
        Err(error) => Err(DnsError::ResponseNotAuthentic {
            server,
            detail: error.to_string(),
        }),
    }
}

fn tsig_error_text(error: TsigError) -> String {
    match error {
        TsigError::BadSig => "BADSIG: the signature does not match its secret".to_owned(),
        TsigError::BadKey => "BADKEY: it knows no key of this name and algorithm".to_owned(),
        TsigError::BadTime => "BADTIME: the clocks differ too much".to_owned(),
        TsigError::BadTrunc => "BADTRUNC: truncated signature".to_owned(),
        TsigError::Unknown(code) => format!("TSIG error {code}"),
    }
}

fn unix_time_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tsig::TsigAlgorithm;
    use hickory_proto::op::OpCode;
    use hickory_proto::rr::DNSClass;

    fn switch(old: &[&str], new: &[&str]) -> DnsSwitch {
        DnsSwitch {
            server: "127.0.0.1:53".parse().unwrap(),
            zone: "example.test".to_owned(),
            name: "app.example.test".to_owned(),
            record_type: RecordType::A,
            ttl: 60,
            tsig: None,
            old: old.iter().map(|value| (*value).to_owned()).collect(),
            new: new.iter().map(|value| (*value).to_owned()).collect(),
            timeout: Duration::from_secs(1),
        }
    }

    #[test]
    fn the_update_is_one_message_conditional_on_the_old_values() {
        let prepared = PreparedSwitch::new(&switch(&["192.0.2.10"], &["198.51.100.10"])).unwrap();
        let message = prepared.update_message(60);
        assert_eq!(message.metadata.op_code, OpCode::Update);
        // Prerequisite: the record set holds exactly 192.0.2.10 (class IN, TTL 0).
        let [prerequisite] = message.answers.as_slice() else {
            panic!("one prerequisite: {:?}", message.answers)
        };
        assert_eq!(prerequisite.dns_class, DNSClass::IN);
        assert_eq!(prerequisite.ttl, 0);
        assert_eq!(prerequisite.data.to_string(), "192.0.2.10");
        // Updates: delete that value (class NONE), add the new one with the new TTL.
        let updates: Vec<_> = message
            .authorities
            .iter()
            .map(|record| (record.dns_class, record.ttl, record.data.to_string()))
            .collect();
        assert_eq!(
            updates,
            [
                (DNSClass::NONE, 0, "192.0.2.10".to_owned()),
                (DNSClass::IN, 60, "198.51.100.10".to_owned())
            ]
        );
    }

    #[test]
    fn without_old_values_the_record_set_must_not_exist() {
        let prepared = PreparedSwitch::new(&switch(&[], &["198.51.100.10"])).unwrap();
        let message = prepared.update_message(60);
        let [prerequisite] = message.answers.as_slice() else {
            panic!("one prerequisite: {:?}", message.answers)
        };
        assert_eq!(prerequisite.dns_class, DNSClass::NONE);
    }

    #[test]
    fn debug_of_a_switch_never_shows_the_secret() {
        let mut signed = switch(&["192.0.2.10"], &["198.51.100.10"]);
        signed.tsig = Some(TsigKey {
            name: "lifeboat".to_owned(),
            algorithm: TsigAlgorithm::HmacSha512,
            secret_base64: "c3VwZXItc2VjcmV0".to_owned(),
        });
        let shown = format!("{signed:?}");
        assert!(!shown.contains("c3VwZXItc2VjcmV0"), "{shown}");
        assert!(
            shown.contains("HmacSha512") && shown.contains("192.0.2.10"),
            "{shown}"
        );
    }

    #[test]
    fn inputs_are_checked_before_anything_is_sent() {
        let mut outside = switch(&["192.0.2.10"], &["198.51.100.10"]);
        outside.name = "app.example.org".to_owned();
        let error = PreparedSwitch::new(&outside).err().unwrap().to_string();
        assert!(
            error.contains("not inside the zone example.test."),
            "{error}"
        );

        let error = PreparedSwitch::new(&switch(&["192.0.2.10"], &[]))
            .err()
            .unwrap()
            .to_string();
        assert!(error.contains("no new value"), "{error}");

        let mut two_aliases = switch(&[], &["a.example.net", "b.example.net"]);
        two_aliases.record_type = RecordType::Cname;
        let error = PreparedSwitch::new(&two_aliases).err().unwrap().to_string();
        assert!(error.contains("exactly one name"), "{error}");

        let error = PreparedSwitch::new(&switch(&["192.0.2.300"], &["198.51.100.10"]))
            .err()
            .unwrap()
            .to_string();
        assert!(
            error.contains("`192.0.2.300` is not an IPv4 address"),
            "{error}"
        );

        let mut bad_secret = switch(&["192.0.2.10"], &["198.51.100.10"]);
        bad_secret.tsig = Some(TsigKey {
            name: "lifeboat".to_owned(),
            algorithm: TsigAlgorithm::HmacSha256,
            secret_base64: "*** not base64 ***".to_owned(),
        });
        let error = PreparedSwitch::new(&bad_secret).err().unwrap().to_string();
        assert!(
            error.contains("not valid base64") && !error.contains("***"),
            "{error}"
        );
    }
}
