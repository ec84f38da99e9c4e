//! The vault: AES-256-GCM encryption of every token and client secret at rest (S2).
//!
//! Each ciphertext carries the id of the key that sealed it, so a keyring holding the
//! new key and the previous ones can open everything while a rotation re-seals records
//! online. The associated data names the record and field the value belongs to; a
//! ciphertext copied onto another record or field fails authentication.
//!
//! Sealed form: `kw1.<key id>.<base64url(nonce || ciphertext || tag)>`.

use crate::secret::{Secret, SecretBytes};
use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine;
use rand::RngCore;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::fmt;

const PREFIX: &str = "kw1";
const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum VaultError {
    #[error("the master key must be 32 bytes of standard base64 ({0})")]
    BadKey(String),
    #[error("sealed value is malformed")]
    Malformed,
    #[error("sealed with key {0}, which is not in the keyring")]
    UnknownKey(String),
    #[error("sealed value failed authentication for this record and field")]
    Authentication,
}

/// The record and field a sealed value belongs to: the AEAD's associated data.
#[derive(Debug, Clone, Copy)]
pub struct FieldRef<'a> {
    pub table: &'static str,
    pub record_id: &'a str,
    pub field: &'static str,
}

impl<'a> FieldRef<'a> {
    pub fn new(table: &'static str, record_id: &'a str, field: &'static str) -> Self {
        Self {
            table,
            record_id,
            field,
        }
    }
    fn aad(&self) -> Vec<u8> {
        format!("keyway/v1/{}/{}/{}", self.table, self.record_id, self.field).into_bytes()
    }
}

/// A 32-byte master key.
#[derive(Clone)]
pub struct MasterKey {
    bytes: SecretBytes,
    id: String,
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MasterKey({}, [redacted])", self.id)
    }
}

impl MasterKey {
    pub fn from_bytes(bytes: Vec<u8>) -> Result<Self, VaultError> {
        if bytes.len() != 32 {
            return Err(VaultError::BadKey(format!("got {} bytes", bytes.len())));
        }
        let digest = Sha256::new()
            .chain_update(b"keyway key id\0")
            .chain_update(&bytes)
            .finalize();
        let id = hex::encode(&digest[..4]);
        Ok(Self {
            bytes: SecretBytes::new(bytes),
            id,
        })
    }

    /// Parses standard base64 (padding optional), as in `KEYWAY_MASTER_KEY`.
    pub fn from_base64(text: &str) -> Result<Self, VaultError> {
        let text = text.trim();
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(text)
            .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(text))
            .map_err(|_| VaultError::BadKey("not base64".into()))?;
        Self::from_bytes(bytes)
    }

    pub fn generate() -> Self {
        let mut bytes = vec![0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        // 32 bytes is always a valid length.
        Self::from_bytes(bytes).unwrap_or_else(|_| unreachable!())
    }

    pub fn to_base64(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(self.bytes.expose())
    }

    /// A short public fingerprint of the key, stored beside every ciphertext.
    pub fn id(&self) -> &str {
        &self.id
    }
}

/// The keyring: one active key that seals, and older keys that can still open.
#[derive(Clone)]
pub struct Vault {
    active: String,
    ciphers: HashMap<String, Aes256Gcm>,
}

impl fmt::Debug for Vault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Vault")
            .field("active", &self.active)
            .field("keys", &self.ciphers.len())
            .finish()
    }
}

impl Vault {
    pub fn new(active: &MasterKey, previous: &[MasterKey]) -> Self {
        let mut ciphers = HashMap::new();
        for key in previous.iter().chain(std::iter::once(active)) {
            let cipher = Aes256Gcm::new_from_slice(key.bytes.expose())
                .unwrap_or_else(|_| unreachable!("keys are 32 bytes"));
            ciphers.insert(key.id.clone(), cipher);
        }
        Self {
            active: active.id.clone(),
            ciphers,
        }
    }

    pub fn active_key_id(&self) -> &str {
        &self.active
    }

    pub fn seal(&self, field: FieldRef<'_>, plaintext: &str) -> String {
        let cipher = &self.ciphers[&self.active];
        let mut nonce = [0u8; 12];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let aad = field.aad();
        let ct = cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plaintext.as_bytes(),
                    aad: &aad,
                },
            )
            .unwrap_or_else(|_| unreachable!("AES-GCM encryption of a bounded message"));
        let mut blob = nonce.to_vec();
        blob.extend_from_slice(&ct);
        format!("{PREFIX}.{}.{}", self.active, B64.encode(blob))
    }

    pub fn open(&self, field: FieldRef<'_>, sealed: &str) -> Result<Secret, VaultError> {
        let mut parts = sealed.splitn(3, '.');
        let (Some(PREFIX), Some(kid), Some(body)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(VaultError::Malformed);
        };
        let cipher = self
            .ciphers
            .get(kid)
            .ok_or_else(|| VaultError::UnknownKey(kid.to_string()))?;
        let blob = B64.decode(body).map_err(|_| VaultError::Malformed)?;
        if blob.len() < 12 + 16 {
            return Err(VaultError::Malformed);
        }
        let (nonce, ct) = blob.split_at(12);
        let aad = field.aad();
        let plain = cipher
            .decrypt(Nonce::from_slice(nonce), Payload { msg: ct, aad: &aad })
            .map_err(|_| VaultError::Authentication)?;
        String::from_utf8(plain)
            .map(Secret::new)
            .map_err(|_| VaultError::Malformed)
    }

    /// Whether a sealed value was made with a key other than the active one.
    pub fn needs_reseal(&self, sealed: &str) -> bool {
        sealed.split('.').nth(1) != Some(self.active.as_str())
    }

    /// Opens with whatever key sealed it and seals again with the active key.
    pub fn reseal(&self, field: FieldRef<'_>, sealed: &str) -> Result<String, VaultError> {
        let plain = self.open(field, sealed)?;
        Ok(self.seal(field, plain.expose()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(id: &str) -> FieldRef<'_> {
        FieldRef::new("connections", id, "access_token")
    }

    #[test]
    fn seal_open_round_trip() {
        let v = Vault::new(&MasterKey::generate(), &[]);
        let sealed = v.seal(field("conn_a"), "xoxb-1");
        assert!(!sealed.contains("xoxb"));
        assert_eq!(
            v.open(field("conn_a"), &sealed)
                .map(|s| s.expose().to_string()),
            Ok("xoxb-1".into())
        );
    }

    #[test]
    fn swapping_records_or_fields_fails() {
        let v = Vault::new(&MasterKey::generate(), &[]);
        let sealed = v.seal(field("conn_a"), "xoxb-1");
        assert_eq!(
            v.open(field("conn_b"), &sealed),
            Err(VaultError::Authentication)
        );
        let other_field = FieldRef::new("connections", "conn_a", "refresh_token");
        assert_eq!(
            v.open(other_field, &sealed),
            Err(VaultError::Authentication)
        );
        let other_table = FieldRef::new("integrations", "conn_a", "access_token");
        assert_eq!(
            v.open(other_table, &sealed),
            Err(VaultError::Authentication)
        );
    }

    #[test]
    fn tampering_and_garbage_are_rejected() {
        let v = Vault::new(&MasterKey::generate(), &[]);
        let sealed = v.seal(field("c"), "secret");
        let mut bytes = sealed.into_bytes();
        let last = bytes.len() - 2;
        bytes[last] = if bytes[last] == b'A' { b'B' } else { b'A' };
        let tampered = String::from_utf8(bytes).expect("ascii");
        assert!(v.open(field("c"), &tampered).is_err());
        assert_eq!(v.open(field("c"), "plain"), Err(VaultError::Malformed));
        assert_eq!(v.open(field("c"), "kw1.abc"), Err(VaultError::Malformed));
    }

    #[test]
    fn rotation_keeps_old_values_readable_and_reseals() {
        let old = MasterKey::generate();
        let new = MasterKey::generate();
        let before = Vault::new(&old, &[]);
        let sealed = before.seal(field("c"), "tok");
        let after = Vault::new(&new, std::slice::from_ref(&old));
        assert!(after.needs_reseal(&sealed));
        let resealed = after.reseal(field("c"), &sealed).expect("reseal");
        assert!(!after.needs_reseal(&resealed));
        let only_new = Vault::new(&new, &[]);
        assert_eq!(
            only_new
                .open(field("c"), &resealed)
                .map(|s| s.expose().to_string()),
            Ok("tok".into())
        );
        assert!(matches!(
            only_new.open(field("c"), &sealed),
            Err(VaultError::UnknownKey(_))
        ));
    }

    #[test]
    fn master_key_parsing() {
        let k = MasterKey::generate();
        let parsed = MasterKey::from_base64(&k.to_base64()).expect("parse");
        assert_eq!(parsed.id(), k.id());
        assert!(MasterKey::from_base64("c2hvcnQ=").is_err());
        assert!(MasterKey::from_base64("!!!").is_err());
        assert!(!format!("{k:?}").contains(&k.to_base64()));
    }
}
