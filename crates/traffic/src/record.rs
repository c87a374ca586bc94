//! Record types and values, in one canonical text form.
//!
//! Values come from a plan as text and from the server as wire data; comparing them ("does the
//! record set hold exactly the expected values?") needs one form for both. Addresses are
//! parsed and printed back (`2001:db8:0::1` becomes `2001:db8::1`), names are lower-cased and
//! made fully qualified (`LB.example.net` becomes `lb.example.net.`), and a record set is a
//! sorted list without duplicates, since DNS record sets are sets.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use hickory_proto::rr::rdata::{A, AAAA, CNAME, NS};
use hickory_proto::rr::{self, Name, RData};

use crate::error::DnsError;

/// The record types a traffic switch can change.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RecordType {
    /// IPv4 addresses.
    A,
    /// IPv6 addresses.
    Aaaa,
    /// One canonical name (an alias): a CNAME record set never holds more than one value.
    Cname,
    /// Name servers (for switching a delegation).
    Ns,
}

impl RecordType {
    /// The type's mnemonic, as in zone files: `A`, `AAAA`, `CNAME`, `NS`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::A => "A",
            Self::Aaaa => "AAAA",
            Self::Cname => "CNAME",
            Self::Ns => "NS",
        }
    }

    pub(crate) fn to_hickory(self) -> rr::RecordType {
        match self {
            Self::A => rr::RecordType::A,
            Self::Aaaa => rr::RecordType::AAAA,
            Self::Cname => rr::RecordType::CNAME,
            Self::Ns => rr::RecordType::NS,
        }
    }
}

impl fmt::Display for RecordType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for RecordType {
    type Err = DnsError;

    /// Parses a mnemonic, in any case: `a`, `AAAA`, `cname`, `NS`.
    fn from_str(text: &str) -> Result<Self, DnsError> {
        match text.to_ascii_uppercase().as_str() {
            "A" => Ok(Self::A),
            "AAAA" => Ok(Self::Aaaa),
            "CNAME" => Ok(Self::Cname),
            "NS" => Ok(Self::Ns),
            _ => Err(DnsError::InvalidInput(format!(
                "`{text}` is not a record type a traffic switch can change (A, AAAA, CNAME or NS)"
            ))),
        }
    }
}

/// Parses a domain name as fully qualified and lower-cased (`App.Example.test` and
/// `app.example.test.` are the same name). `what` says which name it is, for the error.
pub(crate) fn parse_fqdn(text: &str, what: &str) -> Result<Name, DnsError> {
    let trimmed = text.trim();
    if trimmed.is_empty() || trimmed == "." {
        return Err(DnsError::InvalidInput(format!(
            "the {what} is empty (a domain name such as `app.example.com` is needed)"
        )));
    }
    let mut name = Name::from_ascii(trimmed).map_err(|error| {
        DnsError::InvalidInput(format!(
            "the {what} `{text}` is not a valid domain name: {error}"
        ))
    })?;
    name.set_fqdn(true);
    Ok(name.to_lowercase())
}

/// One value of a record set, parsed by record type.
pub(crate) fn parse_value(record_type: RecordType, text: &str) -> Result<RData, DnsError> {
    let trimmed = text.trim();
    let not_an = |kind: &str| {
        DnsError::InvalidInput(format!(
            "`{text}` is not {kind} (the record type is {record_type})"
        ))
    };
    match record_type {
        RecordType::A => trimmed
            .parse::<Ipv4Addr>()
            .map(|address| RData::A(A(address)))
            .map_err(|_| not_an("an IPv4 address")),
        RecordType::Aaaa => trimmed
            .parse::<Ipv6Addr>()
            .map(|address| RData::AAAA(AAAA(address)))
            .map_err(|_| not_an("an IPv6 address")),
        RecordType::Cname => {
            parse_fqdn(trimmed, "CNAME target").map(|name| RData::CNAME(CNAME(name)))
        }
        RecordType::Ns => parse_fqdn(trimmed, "name server").map(|name| RData::NS(NS(name))),
    }
}

/// The canonical text of a value the server sent, or `None` for data of another type.
pub(crate) fn value_text(record_type: RecordType, data: &RData) -> Option<String> {
    match (record_type, data) {
        (RecordType::A, RData::A(address)) => Some(address.0.to_string()),
        (RecordType::Aaaa, RData::AAAA(address)) => Some(address.0.to_string()),
        (RecordType::Cname, RData::CNAME(target)) => Some(target.0.to_lowercase().to_ascii()),
        (RecordType::Ns, RData::NS(server)) => Some(server.0.to_lowercase().to_ascii()),
        _ => None,
    }
}

/// A record set's values parsed by type, in canonical order, without duplicates.
pub(crate) fn parse_values(
    record_type: RecordType,
    values: &[String],
) -> Result<Vec<RData>, DnsError> {
    let mut parsed = values
        .iter()
        .map(|value| parse_value(record_type, value))
        .collect::<Result<Vec<_>, _>>()?;
    parsed.sort_by_key(sort_key);
    parsed.dedup();
    Ok(parsed)
}

/// The values of a record set (for example from a plan) in canonical form: parsed by record
/// type, printed back, sorted, without duplicates. Two record sets are the same exactly when
/// their canonical values are equal.
///
/// ```
/// use lifeboat_traffic::{RecordType, canonical_values};
/// let values = vec!["2001:DB8:0::1".to_owned(), "2001:db8::1".to_owned()];
/// assert_eq!(canonical_values(RecordType::Aaaa, &values).unwrap(), ["2001:db8::1"]);
/// ```
pub fn canonical_values(
    record_type: RecordType,
    values: &[String],
) -> Result<Vec<String>, DnsError> {
    Ok(parse_values(record_type, values)?
        .iter()
        .filter_map(|data| value_text(record_type, data))
        .collect())
}

/// Sorts canonical texts in the same order as [`parse_values`] sorts parsed values.
pub(crate) fn sort_canonical(record_type: RecordType, values: &mut Vec<String>) {
    values.sort_by_key(|text| match parse_value(record_type, text) {
        Ok(data) => sort_key(&data),
        Err(_) => SortKey::Text(text.clone()),
    });
    values.dedup();
}

/// Addresses sort numerically (so `192.0.2.9` comes before `192.0.2.10`), names by their text.
#[derive(PartialEq, Eq, PartialOrd, Ord)]
enum SortKey {
    V4(Ipv4Addr),
    V6(Ipv6Addr),
    Text(String),
}

fn sort_key(data: &RData) -> SortKey {
    match data {
        RData::A(address) => SortKey::V4(address.0),
        RData::AAAA(address) => SortKey::V6(address.0),
        RData::CNAME(name) => SortKey::Text(name.0.to_lowercase().to_ascii()),
        RData::NS(name) => SortKey::Text(name.0.to_lowercase().to_ascii()),
        other => SortKey::Text(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(values: &[&str]) -> Vec<String> {
        values.iter().map(|value| (*value).to_owned()).collect()
    }

    #[test]
    fn record_types_parse_in_any_case_and_print_as_mnemonics() {
        for (text, record_type) in [
            ("a", RecordType::A),
            ("AAAA", RecordType::Aaaa),
            ("Cname", RecordType::Cname),
            ("ns", RecordType::Ns),
        ] {
            let parsed: RecordType = text.parse().unwrap();
            assert_eq!(parsed, record_type);
            assert_eq!(parsed.to_string(), text.to_ascii_uppercase());
        }
        let error = "MX".parse::<RecordType>().unwrap_err().to_string();
        assert!(error.contains("`MX` is not a record type"), "{error}");
    }

    #[test]
    fn ipv4_values_are_sorted_numerically_and_deduplicated() {
        let values = strings(&["192.0.2.10", " 192.0.2.9 ", "192.0.2.10"]);
        assert_eq!(
            canonical_values(RecordType::A, &values).unwrap(),
            ["192.0.2.9", "192.0.2.10"]
        );
    }

    #[test]
    fn ipv6_values_are_compressed() {
        let values = strings(&["2001:DB8:0:0::0:1"]);
        assert_eq!(
            canonical_values(RecordType::Aaaa, &values).unwrap(),
            ["2001:db8::1"]
        );
    }

    #[test]
    fn a_value_of_the_wrong_family_is_refused_with_the_record_type() {
        let error = canonical_values(RecordType::A, &strings(&["2001:db8::1"]))
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("`2001:db8::1` is not an IPv4 address"),
            "{error}"
        );
        assert!(error.contains("the record type is A"), "{error}");

        let error = canonical_values(RecordType::Aaaa, &strings(&["192.0.2.1"]))
            .unwrap_err()
            .to_string();
        assert!(error.contains("not an IPv6 address"), "{error}");

        let error = canonical_values(RecordType::A, &strings(&["app.example.com"]))
            .unwrap_err()
            .to_string();
        assert!(error.contains("not an IPv4 address"), "{error}");
    }

    #[test]
    fn names_are_lower_cased_and_fully_qualified() {
        let values = strings(&["LB.Example.NET", "lb.example.net."]);
        assert_eq!(
            canonical_values(RecordType::Cname, &values).unwrap(),
            ["lb.example.net."]
        );
        let values = strings(&["ns2.example.net", "ns1.example.net."]);
        assert_eq!(
            canonical_values(RecordType::Ns, &values).unwrap(),
            ["ns1.example.net.", "ns2.example.net."]
        );
    }

    #[test]
    fn empty_and_invalid_names_are_refused() {
        for bad in ["", ".", "a..b"] {
            let result = canonical_values(RecordType::Cname, &strings(&[bad]));
            assert!(result.is_err(), "`{bad}` was accepted: {result:?}");
        }
    }

    #[test]
    fn canonical_texts_sort_like_parsed_values() {
        let mut values = strings(&["192.0.2.10", "192.0.2.9", "192.0.2.10"]);
        sort_canonical(RecordType::A, &mut values);
        assert_eq!(values, ["192.0.2.9", "192.0.2.10"]);
    }
}
