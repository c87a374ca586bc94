//! Switching where users are sent, by DNS, for failover.
//!
//! A failover runbook ends by pointing users at the surviving site. This crate does that step
//! against the zone's authoritative server and nothing else, so that it can be trusted at the
//! worst moment:
//!
//! - **One atomic update.** [`switch_dns`] sends a single RFC 2136 dynamic update whose
//!   *prerequisite* is that the record set holds exactly the values the runbook expects
//!   ("RRset exists, value dependent"), and whose update section replaces them with the new
//!   ones. The server applies all of it or none of it: there is no instant where the name
//!   resolves to nothing (as with a delete and an add sent separately), and an update based on a
//!   stale view of the zone — someone else already moved the traffic elsewhere — is refused
//!   rather than overwriting their change.
//! - **Idempotent.** A resumed runbook re-runs its steps: when the record set already holds the
//!   new values, nothing is sent and the outcome says so ([`SwitchOutcome::AlreadySwitched`]).
//! - **Authenticated.** Updates are signed with TSIG (RFC 8945, HMAC-SHA256 or HMAC-SHA512) and
//!   the server's signed answer is verified. A refused signature is reported as such, with what
//!   to check, rather than as an opaque protocol error.
//! - **Checked at the source.** [`query_records`] and [`confirm`] ask the authoritative server
//!   directly, never a recursive resolver whose cache would show the past.
//! - **Honest about caches.** Resolvers keep serving the old answer for as long as its TTL;
//!   [`ttl_warning`] says when that is longer than the recovery-time budget.
//!
//! The crate knows nothing of the plan format: the binary maps a plan's traffic section to a
//! [`DnsSwitch`]. Everything is synchronous (plain threads, like the rest of lifeboat) and
//! every network exchange is bounded by a timeout. TSIG secrets are never logged, put in errors
//! or shown by `Debug`.

mod error;
mod query;
mod record;
mod transport;
mod tsig;
mod ttl;
mod update;

pub use error::DnsError;
pub use query::{RecordSetAnswer, confirm, query_record_set, query_records};
pub use record::{RecordType, canonical_values};
pub use tsig::{TsigAlgorithm, TsigKey};
pub use ttl::ttl_warning;
pub use update::{DnsSwitch, SwitchOutcome, switch_dns};
