//! Identifiers, random tokens and digests.

use base64::Engine;
use rand::RngCore;
use sha2::{Digest, Sha256};

const ALPHABET: &[u8] = b"abcdefghijkmnpqrstuvwxyz23456789";

/// A new random identifier such as `conn_7kq2...`: 20 characters from a 32-symbol
/// alphabet (100 bits), prefixed with what it names.
pub fn new_id(prefix: &str) -> String {
    let mut bytes = [0u8; 20];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    let body: String = bytes
        .iter()
        .map(|b| ALPHABET[(*b as usize) % ALPHABET.len()] as char)
        .collect();
    format!("{prefix}_{body}")
}

/// A bearer-style random token: `bytes` random bytes, base64url without padding.
pub fn random_token(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::rngs::OsRng.fill_bytes(&mut buf);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(buf)
}

/// Lower-case hex SHA-256: how API keys, connect-session tokens and OAuth states are
/// stored, so a database leak does not hand out usable credentials.
pub fn sha256_hex(input: &str) -> String {
    hex::encode(Sha256::digest(input.as_bytes()))
}

/// RFC 7636 §4.2: `code_challenge = BASE64URL(SHA256(code_verifier))` (method S256).
pub fn pkce_challenge(verifier: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_prefixed_and_distinct() {
        let a = new_id("conn");
        let b = new_id("conn");
        assert!(a.starts_with("conn_"));
        assert_eq!(a.len(), 25);
        assert_ne!(a, b);
    }

    #[test]
    fn pkce_matches_rfc7636_appendix_b() {
        assert_eq!(
            pkce_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }
}
