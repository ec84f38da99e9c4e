//! Secret newtypes: their `Debug` never shows the value, and memory is zeroized on drop.

use std::fmt;
use zeroize::{Zeroize, ZeroizeOnDrop};

/// A secret string: an access or refresh token, a client secret, an API key.
///
/// There is deliberately no `Display` and no `Serialize`: reading the value takes an
/// explicit call to [`Secret::expose`], which makes every place a secret leaves memory
/// visible in review (invariant S1).
#[derive(Clone, PartialEq, Eq, Zeroize, ZeroizeOnDrop)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret value, for the one place that must send or seal it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

impl<'de> serde::Deserialize<'de> for Secret {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Secret)
    }
}

/// Raw key material (the master key), redacted and zeroized like [`Secret`].
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct SecretBytes(Vec<u8>);

impl SecretBytes {
    pub fn new(bytes: Vec<u8>) -> Self {
        Self(bytes)
    }
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for SecretBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretBytes([redacted])")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_is_redacted() {
        let s = Secret::new("xoxb-very-secret");
        let shown = format!("{s:?} {:?}", Some(&s));
        assert!(!shown.contains("very-secret"), "{shown}");
        assert!(shown.contains("redacted"));
        let b = SecretBytes::new(vec![0x41; 32]);
        assert!(!format!("{b:?}").contains("65"));
        assert!(!format!("{b:?}").contains("AAAA"));
    }

    #[test]
    fn zeroize_clears_the_value() {
        let mut s = Secret::new("abc");
        s.zeroize();
        assert!(s.expose().is_empty());
    }
}
