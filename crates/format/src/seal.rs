//! Sealing: compression (skipped when it does not pay) followed by authenticated encryption.
//!
//! A sealed object is `nonce (24) || ciphertext || tag (16)`, XChaCha20-Poly1305 with a fresh
//! random nonce: 192-bit nonces make random generation safe for any number of objects under
//! one key. The associated data is a domain label (`Domain`), so a frame cannot be passed off
//! as an index file or a manifest even though they share a key.

use chacha20poly1305::aead::{AeadInOut, KeyInit};
use chacha20poly1305::{Tag, XChaCha20Poly1305, XNonce};

use crate::FormatError;

pub const NONCE_LEN: usize = 24;
pub const TAG_LEN: usize = 16;
/// Bytes a sealed object adds to its (compressed) plaintext.
pub const OVERHEAD: usize = NONCE_LEN + TAG_LEN;

/// What a sealed object is, bound into its authentication tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Domain {
    KeyFile,
    Frame,
    PackHeader,
    Index,
    Manifest,
}

impl Domain {
    fn label(self) -> &'static [u8] {
        match self {
            Domain::KeyFile => b"lifeboat/v1/key",
            Domain::Frame => b"lifeboat/v1/frame",
            Domain::PackHeader => b"lifeboat/v1/pack-header",
            Domain::Index => b"lifeboat/v1/index",
            Domain::Manifest => b"lifeboat/v1/manifest",
        }
    }

    fn what(self) -> &'static str {
        match self {
            Domain::KeyFile => "key file",
            Domain::Frame => "pack frame",
            Domain::PackHeader => "pack header",
            Domain::Index => "index file",
            Domain::Manifest => "restore point manifest",
        }
    }
}

pub(crate) fn fill_random(buf: &mut [u8]) {
    // The operating system's generator failing is not a condition a backup can work around.
    getrandom::fill(buf).expect("the operating system's random number generator failed");
}

/// Encrypts `plaintext` under `key`, appending to `out`.
pub fn encrypt_into(key: &[u8; 32], domain: Domain, plaintext: &[u8], out: &mut Vec<u8>) {
    let cipher = XChaCha20Poly1305::new(key.into());
    let mut nonce = [0u8; NONCE_LEN];
    fill_random(&mut nonce);
    out.reserve(plaintext.len() + OVERHEAD);
    out.extend_from_slice(&nonce);
    let start = out.len();
    out.extend_from_slice(plaintext);
    let tag = cipher
        .encrypt_inout_detached(
            &XNonce::from(nonce),
            domain.label(),
            (&mut out[start..]).into(),
        )
        .expect("XChaCha20-Poly1305 accepts messages far larger than any object");
    out.extend_from_slice(&tag);
}

pub fn encrypt(key: &[u8; 32], domain: Domain, plaintext: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(plaintext.len() + OVERHEAD);
    encrypt_into(key, domain, plaintext, &mut out);
    out
}

pub fn decrypt(key: &[u8; 32], domain: Domain, sealed: &[u8]) -> Result<Vec<u8>, FormatError> {
    let what = domain.what();
    if sealed.len() < OVERHEAD {
        return Err(FormatError::Truncated {
            what,
            offset: sealed.len(),
            needed: OVERHEAD - sealed.len(),
        });
    }
    let (nonce, rest) = sealed.split_at(NONCE_LEN);
    let (ciphertext, tag) = rest.split_at(rest.len() - TAG_LEN);
    let mut nonce_bytes = [0u8; NONCE_LEN];
    nonce_bytes.copy_from_slice(nonce);
    let mut tag_bytes = [0u8; TAG_LEN];
    tag_bytes.copy_from_slice(tag);
    let mut plaintext = ciphertext.to_vec();
    XChaCha20Poly1305::new(key.into())
        .decrypt_inout_detached(
            &XNonce::from(nonce_bytes),
            domain.label(),
            plaintext.as_mut_slice().into(),
            &Tag::from(tag_bytes),
        )
        .map_err(|_| FormatError::Unauthentic { what })?;
    Ok(plaintext)
}

const RAW: u8 = 0;
const ZSTD: u8 = 1;

/// Compresses with zstd, reusing its context between calls; one per thread.
pub struct Compressor {
    level: i32,
    zstd: zstd::bulk::Compressor<'static>,
}

impl Compressor {
    pub fn new(level: i32) -> Self {
        Compressor {
            level,
            zstd: zstd::bulk::Compressor::new(level).expect("zstd accepts its own level range"),
        }
    }

    /// Encodes `data` as a compressed payload: `0 || data` when compression would not
    /// save at least 3%, else `1 || u32 plaintext length || zstd frame`.
    pub fn encode(&mut self, data: &[u8], out: &mut Vec<u8>) {
        if data.len() >= 64 && self.worth_compressing(data) {
            let bound = zstd::zstd_safe::compress_bound(data.len());
            let start = out.len();
            out.push(ZSTD);
            out.extend_from_slice(&(data.len() as u32).to_le_bytes());
            let header_end = out.len();
            out.resize(header_end + bound, 0);
            if let Ok(n) = self.zstd.compress_to_buffer(data, &mut out[header_end..])
                && n + 5 < data.len() - data.len() / 32
            {
                out.truncate(header_end + n);
                return;
            }
            out.truncate(start);
        }
        out.push(RAW);
        out.extend_from_slice(data);
    }

    /// Large inputs are sampled first so that already-compressed data (media, archives,
    /// encrypted files) costs a small probe instead of a full compression pass.
    fn worth_compressing(&mut self, data: &[u8]) -> bool {
        const SAMPLE: usize = 16 * 1024;
        if data.len() < 8 * SAMPLE {
            return true;
        }
        let mid = data.len() / 2;
        let sample = &data[mid..mid + SAMPLE];
        let mut probe = vec![0u8; zstd::zstd_safe::compress_bound(SAMPLE)];
        let level = self.level.min(1);
        match zstd::bulk::compress_to_buffer(sample, &mut probe, level) {
            Ok(n) => n < SAMPLE - SAMPLE / 16,
            Err(_) => true,
        }
    }
}

/// Upper bound on a decoded payload: frames and trees are far smaller; this stops a forged
/// length from allocating gigabytes.
pub const MAX_PAYLOAD: usize = 256 * 1024 * 1024;

pub fn decode(what: &'static str, payload: &[u8]) -> Result<Vec<u8>, FormatError> {
    match payload.split_first() {
        Some((&RAW, data)) => Ok(data.to_vec()),
        Some((&ZSTD, rest)) => {
            if rest.len() < 4 {
                return Err(FormatError::Truncated {
                    what,
                    offset: 1,
                    needed: 4 - rest.len(),
                });
            }
            let len = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
            if len > MAX_PAYLOAD {
                return Err(FormatError::corrupt(what, format!("claims {len} bytes")));
            }
            let data = zstd::bulk::decompress(&rest[4..], len)
                .map_err(|e| FormatError::corrupt(what, format!("zstd: {e}")))?;
            if data.len() != len {
                return Err(FormatError::corrupt(
                    what,
                    format!("decompressed to {} bytes, expected {len}", data.len()),
                ));
            }
            Ok(data)
        }
        Some((tag, _)) => Err(FormatError::corrupt(
            what,
            format!("unknown compression tag {tag}"),
        )),
        None => Err(FormatError::Truncated {
            what,
            offset: 0,
            needed: 1,
        }),
    }
}

/// Compresses (when worth it) then encrypts: what index files and manifests use. (Pack
/// headers and key files are only encrypted.)
pub fn seal(key: &[u8; 32], domain: Domain, plaintext: &[u8]) -> Vec<u8> {
    let mut payload = Vec::with_capacity(plaintext.len() / 2 + 16);
    Compressor::new(3).encode(plaintext, &mut payload);
    encrypt(key, domain, &payload)
}

pub fn unseal(key: &[u8; 32], domain: Domain, sealed: &[u8]) -> Result<Vec<u8>, FormatError> {
    let payload = decrypt(key, domain, sealed)?;
    decode(domain.what(), &payload)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const KEY: [u8; 32] = [7; 32];

    #[test]
    fn compressible_data_shrinks_and_random_data_is_stored_raw() {
        let mut c = Compressor::new(3);
        let text = b"lifeboat ".repeat(10_000);
        let mut out = Vec::new();
        c.encode(&text, &mut out);
        assert_eq!(out[0], ZSTD);
        assert!(out.len() < text.len() / 10);
        assert_eq!(decode("t", &out).unwrap(), text);

        let mut noise = vec![0u8; 300_000];
        fill_random(&mut noise);
        let mut out = Vec::new();
        c.encode(&noise, &mut out);
        assert_eq!(out[0], RAW);
        assert_eq!(decode("t", &out).unwrap(), noise);
    }

    #[test]
    fn any_flipped_bit_is_detected() {
        let sealed = seal(&KEY, Domain::Index, b"some index");
        for i in 0..sealed.len() {
            let mut bad = sealed.clone();
            bad[i] ^= 0x10;
            assert!(unseal(&KEY, Domain::Index, &bad).is_err(), "byte {i}");
        }
    }

    #[test]
    fn the_domain_is_authenticated() {
        let sealed = seal(&KEY, Domain::Index, b"x");
        assert_eq!(
            unseal(&KEY, Domain::Manifest, &sealed),
            Err(FormatError::Unauthentic {
                what: "restore point manifest"
            })
        );
    }

    proptest! {
        #[test]
        fn seal_round_trips(data: Vec<u8>) {
            let sealed = seal(&KEY, Domain::Manifest, &data);
            prop_assert_eq!(unseal(&KEY, Domain::Manifest, &sealed).unwrap(), data);
        }

        #[test]
        fn decode_never_panics(data: Vec<u8>) {
            let _ = decode("fuzz", &data);
            let _ = unseal(&KEY, Domain::Frame, &data);
        }
    }
}
