//! The repository's stored formats — a compatibility promise, documented in `docs/format.md`.
//!
//! Everything a repository holds is defined here and nowhere else, so that a change to what
//! lands on storage is always a change to this crate. The crate is pure: it turns values into
//! bytes and bytes into values (or a precise error) and never touches a file, a socket or a
//! clock other than the one passed in.
//!
//! The layers, bottom-up:
//! - [`codec`]: a small bounds-checked binary reader/writer every binary format is built on;
//! - [`id`]: 32-byte identifiers; chunk ids are *keyed* BLAKE3 hashes, so the storage cannot
//!   fingerprint known plaintext;
//! - [`keys`]: the master key, sealed in key files under a password-derived key (Argon2id);
//! - [`seal`]: authenticated encryption (XChaCha20-Poly1305) with a domain label as associated
//!   data so an object of one kind cannot be passed off as another, and compression that is
//!   skipped for data that does not compress;
//! - [`pack`]: packs of many chunks, grouped in frames so small chunks compress together;
//! - [`index`]: the binary index mapping chunk ids to their place in packs;
//! - [`tree`]: directory listings with file metadata;
//! - [`manifest`]: restore points.

pub mod codec;
pub mod id;
pub mod index;
pub mod keys;
pub mod manifest;
pub mod pack;
pub mod seal;
pub mod tree;

pub use id::Id;
pub use keys::MasterKey;

/// The version of the repository format this crate reads and writes.
pub const FORMAT_VERSION: u32 = 1;

/// What can be wrong with stored bytes. Every variant names what was being decoded, so that a
/// caller can say which object is damaged and how.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FormatError {
    #[error("{what} is truncated (needed {needed} more bytes at offset {offset})")]
    Truncated {
        what: &'static str,
        offset: usize,
        needed: usize,
    },
    #[error("{what} is corrupt: {detail}")]
    Corrupt { what: &'static str, detail: String },
    #[error("{what} failed authentication: it was modified, damaged, or sealed with another key")]
    Unauthentic { what: &'static str },
    #[error("{what} has format version {found}, this lifeboat reads version {supported}")]
    UnsupportedVersion {
        what: &'static str,
        found: u32,
        supported: u32,
    },
}

impl FormatError {
    pub(crate) fn corrupt(what: &'static str, detail: impl Into<String>) -> Self {
        FormatError::Corrupt {
            what,
            detail: detail.into(),
        }
    }
}
