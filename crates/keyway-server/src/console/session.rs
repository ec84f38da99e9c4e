//! Console sign-in: an admin API key is exchanged for a session cookie (`kw_console`,
//! HttpOnly, SameSite=Strict, Path=/admin). Sessions live in this process's memory — a
//! restart signs everyone out — and carry their own CSRF token for every form (S8).

use keyway_core::ids::{random_token, sha256_hex};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub const COOKIE: &str = "kw_console";
/// A console session ends this long after sign-in.
pub const LIFETIME: Duration = Duration::from_secs(8 * 3600);

#[derive(Debug, Clone)]
pub struct ConsoleSession {
    /// The admin key that signed in: console actions are audited as `key:<id>`.
    pub key_id: String,
    pub csrf: String,
    expires: Instant,
}

#[derive(Default)]
pub struct Sessions {
    by_hash: Mutex<HashMap<String, ConsoleSession>>,
}

impl Sessions {
    /// Starts a session; returns the cookie value (only its hash is kept).
    pub fn create(&self, key_id: &str) -> String {
        let token = random_token(32);
        let mut map = self.by_hash.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        map.retain(|_, s| s.expires > now);
        map.insert(
            sha256_hex(&token),
            ConsoleSession {
                key_id: key_id.to_string(),
                csrf: random_token(24),
                expires: now + LIFETIME,
            },
        );
        token
    }

    pub fn get(&self, token: &str) -> Option<ConsoleSession> {
        let map = self.by_hash.lock().unwrap_or_else(|p| p.into_inner());
        map.get(&sha256_hex(token))
            .filter(|s| s.expires > Instant::now())
            .cloned()
    }

    pub fn end(&self, token: &str) {
        self.by_hash
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&sha256_hex(token));
    }

    /// Ends every session of a key (the key was revoked).
    pub fn end_for_key(&self, key_id: &str) {
        self.by_hash
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|_, s| s.key_id != key_id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_are_found_by_token_and_end() {
        let s = Sessions::default();
        let t = s.create("key_1");
        let got = s.get(&t).expect("session");
        assert_eq!(got.key_id, "key_1");
        assert!(got.csrf.len() >= 24);
        assert!(s.get("not-a-token").is_none());
        let t2 = s.create("key_1");
        s.end(&t);
        assert!(s.get(&t).is_none());
        assert!(s.get(&t2).is_some());
        s.end_for_key("key_1");
        assert!(s.get(&t2).is_none());
    }
}
