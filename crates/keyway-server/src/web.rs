//! Small helpers every browser-facing module shares: reading a cookie and comparing
//! secrets (CSRF tokens, client secrets) in constant time.

use axum::http::{header, HeaderMap};
use subtle::ConstantTimeEq;

/// A cookie's value, if present, non-empty and of a sane length.
pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
        .filter(|v| !v.is_empty() && v.len() <= 128)
}

/// Equal secrets, compared without leaking where they differ.
pub fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_found_by_name_and_secrets_compared() {
        let mut h = HeaderMap::new();
        h.append(header::COOKIE, "a=1; kw_bind=xyz".parse().expect("header"));
        h.append(header::COOKIE, "empty=".parse().expect("header"));
        assert_eq!(cookie(&h, "kw_bind").as_deref(), Some("xyz"));
        assert_eq!(cookie(&h, "empty"), None);
        assert_eq!(cookie(&h, "nope"), None);
        assert!(same_secret("abc", "abc"));
        assert!(!same_secret("abc", "abd") && !same_secret("abc", "abcd"));
    }
}
