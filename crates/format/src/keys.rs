//! The master key and the key files that seal it under a password.
//!
//! A repository has one master key, generated at `repo init`. Each key file under `keys/`
//! seals it with a key derived from a password by Argon2id, so passwords can be added or
//! changed without re-encrypting any data. The KDF parameters live in the key file, so
//! stronger ones can be chosen later without a format change.

use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::seal::{self, Domain};
use crate::{FORMAT_VERSION, FormatError, Id};

/// The repository's secrets: one key for encryption, one for chunk ids, and a seed for the
/// chunker's gear table so chunk boundaries do not reveal known content either.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct MasterKey {
    encryption: [u8; 32],
    chunk_id: [u8; 32],
    chunker_seed: u64,
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(..)")
    }
}

const MASTER_KEY_LEN: usize = 32 + 32 + 8;

impl MasterKey {
    pub fn generate() -> Self {
        let mut bytes = [0u8; MASTER_KEY_LEN];
        seal::fill_random(&mut bytes);
        let key = Self::from_bytes(&bytes);
        bytes.zeroize();
        key
    }

    fn from_bytes(bytes: &[u8; MASTER_KEY_LEN]) -> Self {
        let mut encryption = [0u8; 32];
        let mut chunk_id = [0u8; 32];
        let mut seed = [0u8; 8];
        encryption.copy_from_slice(&bytes[..32]);
        chunk_id.copy_from_slice(&bytes[32..64]);
        seed.copy_from_slice(&bytes[64..]);
        MasterKey {
            encryption,
            chunk_id,
            chunker_seed: u64::from_le_bytes(seed),
        }
    }

    fn to_bytes(&self) -> [u8; MASTER_KEY_LEN] {
        let mut bytes = [0u8; MASTER_KEY_LEN];
        bytes[..32].copy_from_slice(&self.encryption);
        bytes[32..64].copy_from_slice(&self.chunk_id);
        bytes[64..].copy_from_slice(&self.chunker_seed.to_le_bytes());
        bytes
    }

    pub fn encryption_key(&self) -> &[u8; 32] {
        &self.encryption
    }

    /// The keyed BLAKE3 hash of a chunk's plaintext: its id.
    pub fn chunk_id(&self, data: &[u8]) -> Id {
        Id::from_bytes(*blake3::keyed_hash(&self.chunk_id, data).as_bytes())
    }

    pub fn chunker_seed(&self) -> u64 {
        self.chunker_seed
    }
}

/// Argon2id cost parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KdfParams {
    pub memory_kib: u32,
    pub iterations: u32,
    pub parallelism: u32,
}

impl KdfParams {
    /// OWASP's minimum recommendation for Argon2id (19 MiB, 2 passes, 1 lane).
    pub const OWASP_MINIMUM: KdfParams = KdfParams {
        memory_kib: 19 * 1024,
        iterations: 2,
        parallelism: 1,
    };

    /// Parameters accepted when opening a key file: at least OWASP's minimum (so a tampered
    /// key file cannot weaken the derivation) and at most 4 GiB (so it cannot exhaust memory).
    fn check(&self) -> Result<(), FormatError> {
        let min = Self::OWASP_MINIMUM;
        let strong_enough = self.memory_kib >= min.memory_kib
            && self.iterations >= 1
            && self.parallelism >= 1
            && u64::from(self.memory_kib) * u64::from(self.iterations)
                >= u64::from(min.memory_kib) * u64::from(min.iterations);
        if !strong_enough
            || self.memory_kib > 4 * 1024 * 1024
            || self.iterations > 64
            || self.parallelism > 64
        {
            return Err(FormatError::corrupt(
                "key file",
                format!("refusing Argon2id parameters {self:?}"),
            ));
        }
        Ok(())
    }

    fn derive(&self, password: &[u8], salt: &[u8]) -> Result<[u8; 32], FormatError> {
        let params =
            argon2::Params::new(self.memory_kib, self.iterations, self.parallelism, Some(32))
                .map_err(|e| FormatError::corrupt("key file", format!("Argon2 parameters: {e}")))?;
        let argon =
            argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
        let mut out = [0u8; 32];
        argon
            .hash_password_into(password, salt, &mut out)
            .map_err(|e| FormatError::corrupt("key file", format!("Argon2: {e}")))?;
        Ok(out)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyFile {
    pub version: u32,
    pub created: jiff::Timestamp,
    pub kdf: String,
    pub params: KdfParams,
    #[serde(with = "hex_bytes")]
    pub salt: Vec<u8>,
    #[serde(with = "hex_bytes")]
    pub sealed_key: Vec<u8>,
}

/// Why a key file did not open.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("wrong password")]
    WrongPassword,
    #[error(transparent)]
    Format(#[from] FormatError),
}

impl KeyFile {
    pub fn create(
        master: &MasterKey,
        password: &[u8],
        params: KdfParams,
        now: jiff::Timestamp,
    ) -> Result<KeyFile, FormatError> {
        params.check()?;
        let mut salt = vec![0u8; 32];
        seal::fill_random(&mut salt);
        let mut kek = params.derive(password, &salt)?;
        let mut plain = master.to_bytes();
        let sealed_key = seal::encrypt(&kek, Domain::KeyFile, &plain);
        kek.zeroize();
        plain.zeroize();
        Ok(KeyFile {
            version: FORMAT_VERSION,
            created: now,
            kdf: "argon2id".into(),
            params,
            salt,
            sealed_key,
        })
    }

    pub fn open(&self, password: &[u8]) -> Result<MasterKey, KeyError> {
        if self.version != FORMAT_VERSION {
            return Err(FormatError::UnsupportedVersion {
                what: "key file",
                found: self.version,
                supported: FORMAT_VERSION,
            }
            .into());
        }
        if self.kdf != "argon2id" {
            return Err(
                FormatError::corrupt("key file", format!("unknown KDF `{}`", self.kdf)).into(),
            );
        }
        self.params.check()?;
        if self.salt.len() < 16 {
            return Err(FormatError::corrupt("key file", "salt shorter than 16 bytes").into());
        }
        let mut kek = self.params.derive(password, &self.salt)?;
        let opened = seal::decrypt(&kek, Domain::KeyFile, &self.sealed_key);
        kek.zeroize();
        let mut plain = match opened {
            Ok(plain) => plain,
            Err(FormatError::Unauthentic { .. }) => return Err(KeyError::WrongPassword),
            Err(e) => return Err(e.into()),
        };
        let bytes: &[u8; MASTER_KEY_LEN] = plain
            .as_slice()
            .try_into()
            .map_err(|_| FormatError::corrupt("key file", "sealed key has the wrong length"))?;
        let key = MasterKey::from_bytes(bytes);
        plain.zeroize();
        Ok(key)
    }

    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec_pretty(self).expect("a key file always serialises")
    }

    pub fn from_json(bytes: &[u8]) -> Result<KeyFile, FormatError> {
        serde_json::from_slice(bytes).map_err(|e| FormatError::corrupt("key file", e.to_string()))
    }
}

pub(crate) mod hex_bytes {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = String::deserialize(d)?;
        hex::decode(s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn right_password_opens_wrong_password_does_not() {
        let master = MasterKey::generate();
        let kf = KeyFile::create(
            &master,
            b"correct horse",
            KdfParams::OWASP_MINIMUM,
            jiff::Timestamp::UNIX_EPOCH,
        )
        .unwrap();
        let reloaded = KeyFile::from_json(&kf.to_json()).unwrap();
        let opened = reloaded.open(b"correct horse").unwrap();
        assert_eq!(opened.chunk_id(b"x"), master.chunk_id(b"x"));
        assert!(matches!(
            reloaded.open(b"wrong"),
            Err(KeyError::WrongPassword)
        ));
    }

    #[test]
    fn weakened_parameters_are_refused() {
        let master = MasterKey::generate();
        let mut kf = KeyFile::create(
            &master,
            b"pw",
            KdfParams::OWASP_MINIMUM,
            jiff::Timestamp::UNIX_EPOCH,
        )
        .unwrap();
        kf.params.memory_kib = 8;
        assert!(matches!(kf.open(b"pw"), Err(KeyError::Format(_))));
    }

    #[test]
    fn chunk_ids_are_keyed() {
        let a = MasterKey::generate();
        let b = MasterKey::generate();
        assert_ne!(a.chunk_id(b"same"), b.chunk_id(b"same"));
        assert_ne!(a.chunk_id(b"same"), Id::of_stored(b"same"));
    }
}
