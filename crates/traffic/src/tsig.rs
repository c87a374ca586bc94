//! TSIG keys (RFC 8945): the shared secret that authorises an update.
//!
//! The key is written as in BIND's `key` statement (name, algorithm, base64 secret) so an
//! operator can copy it from `named.conf` or a `tsig-keygen` output. Signing and verifying are
//! hickory-proto's `TSigner`; this module only turns the key into one, and makes sure the
//! secret never reaches a log, an error or `Debug` output.

use std::fmt;
use std::str::FromStr;

use hickory_proto::rr::TSigner;
use hickory_proto::rr::rdata::tsig::TsigAlgorithm as HickoryTsigAlgorithm;

use crate::error::DnsError;
use crate::record::parse_fqdn;

/// How far apart (in seconds) the clocks of the client and the server may be for a signature
/// to be accepted: RFC 8945's recommended 300 seconds, as BIND's `nsupdate` uses.
const TSIG_FUDGE_SECONDS: u16 = 300;

/// The HMAC of a TSIG key. Only the two that are neither obsolete (MD5, SHA-1) nor truncated.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TsigAlgorithm {
    /// `hmac-sha256`, BIND's default for `tsig-keygen`.
    HmacSha256,
    /// `hmac-sha512`.
    HmacSha512,
}

impl TsigAlgorithm {
    /// The algorithm's name as in BIND's configuration: `hmac-sha256`, `hmac-sha512`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::HmacSha256 => "hmac-sha256",
            Self::HmacSha512 => "hmac-sha512",
        }
    }

    fn to_hickory(self) -> HickoryTsigAlgorithm {
        match self {
            Self::HmacSha256 => HickoryTsigAlgorithm::HmacSha256,
            Self::HmacSha512 => HickoryTsigAlgorithm::HmacSha512,
        }
    }
}

impl fmt::Display for TsigAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for TsigAlgorithm {
    type Err = DnsError;

    /// Parses `hmac-sha256` or `hmac-sha512`, in any case.
    fn from_str(text: &str) -> Result<Self, DnsError> {
        match text.to_ascii_lowercase().as_str() {
            "hmac-sha256" => Ok(Self::HmacSha256),
            "hmac-sha512" => Ok(Self::HmacSha512),
            _ => Err(DnsError::InvalidInput(format!(
                "`{text}` is not a supported TSIG algorithm (hmac-sha256 or hmac-sha512)"
            ))),
        }
    }
}

/// A TSIG key: its name as the server knows it, its algorithm and its secret.
///
/// `Debug` shows the name and algorithm, never the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct TsigKey {
    /// The key's name, as in the server's `key "NAME" { ... };`.
    pub name: String,
    pub algorithm: TsigAlgorithm,
    /// The shared secret in base64, as in the server's `secret "...";`.
    pub secret_base64: String,
}

impl fmt::Debug for TsigKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TsigKey")
            .field("name", &self.name)
            .field("algorithm", &self.algorithm)
            .field("secret_base64", &"<redacted>")
            .finish()
    }
}

impl TsigKey {
    /// hickory's signer for this key. Fails, without showing the secret, when the name is not a
    /// domain name or the secret is not base64 (spaces and line breaks in it are ignored, as
    /// BIND does).
    pub(crate) fn signer(&self) -> Result<TSigner, DnsError> {
        let key_name = parse_fqdn(&self.name, "TSIG key name")?;
        let compact: String = self
            .secret_base64
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect();
        let secret = data_encoding::BASE64
            .decode(compact.as_bytes())
            .ok()
            .filter(|secret| !secret.is_empty())
            .ok_or_else(|| DnsError::InvalidTsigSecret {
                key_name: self.name.clone(),
            })?;
        TSigner::new(
            secret,
            self.algorithm.to_hickory(),
            key_name,
            TSIG_FUDGE_SECONDS,
        )
        .map_err(|error| {
            DnsError::InvalidInput(format!(
                "the TSIG key `{}` cannot be used: {error}",
                self.name
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(secret: &str) -> TsigKey {
        TsigKey {
            name: "lifeboat".to_owned(),
            algorithm: TsigAlgorithm::HmacSha256,
            secret_base64: secret.to_owned(),
        }
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let shown = format!("{:?}", key("c2VjcmV0LXNlY3JldA=="));
        assert!(!shown.contains("c2VjcmV0"), "{shown}");
        assert!(
            shown.contains("lifeboat") && shown.contains("redacted"),
            "{shown}"
        );
    }

    #[test]
    fn a_secret_that_is_not_base64_is_refused_without_showing_it() {
        for bad in ["not base64!", "", "   "] {
            let error = key(bad).signer().err().expect("refused").to_string();
            assert!(error.contains("`lifeboat` is not valid base64"), "{error}");
            if !bad.trim().is_empty() {
                assert!(!error.contains(bad), "{error}");
            }
        }
    }

    #[test]
    fn a_secret_split_over_lines_is_accepted() {
        let signer = key("c2VjcmV0\n LXNlY3JldA==").signer().unwrap();
        assert_eq!(signer.key(), b"secret-secret");
        assert_eq!(signer.signer_name().to_ascii(), "lifeboat.");
    }

    #[test]
    fn algorithms_parse_as_bind_names_them() {
        assert_eq!(
            "hmac-sha256".parse::<TsigAlgorithm>().unwrap(),
            TsigAlgorithm::HmacSha256
        );
        assert_eq!(
            "HMAC-SHA512".parse::<TsigAlgorithm>().unwrap(),
            TsigAlgorithm::HmacSha512
        );
        let error = "hmac-md5".parse::<TsigAlgorithm>().unwrap_err().to_string();
        assert!(error.contains("hmac-sha256 or hmac-sha512"), "{error}");
    }
}
