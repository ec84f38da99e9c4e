//! Host allow-list patterns (S7): the proxy, tools and per-tenant URLs only reach hosts
//! that match one of the provider's patterns.

/// `api.slack.com` matches itself only; `*.salesforce.com` matches one or more labels in
/// front of `salesforce.com` but not `salesforce.com` itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPattern(String);

impl HostPattern {
    pub fn new(p: &str) -> Self {
        Self(p.to_ascii_lowercase())
    }
    pub fn matches(&self, host: &str) -> bool {
        host_matches(&self.0, host)
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// See [`HostPattern`]. The host must be a plain DNS name or IP literal: no userinfo,
/// port or path characters are accepted, so `evil.com#.slack.com` never matches.
pub fn host_matches(pattern: &str, host: &str) -> bool {
    let host = host.to_ascii_lowercase();
    if host.is_empty()
        || !host.chars().all(|c| {
            c.is_ascii_alphanumeric() || c == '.' || c == '-' || c == ':' || c == '[' || c == ']'
        })
    {
        return false;
    }
    let pattern = pattern.to_ascii_lowercase();
    match pattern.strip_prefix("*.") {
        Some(suffix) => {
            host.len() > suffix.len() + 1
                && host.ends_with(suffix)
                && host.as_bytes()[host.len() - suffix.len() - 1] == b'.'
                && host[..host.len() - suffix.len() - 1]
                    .split('.')
                    .all(|l| !l.is_empty())
        }
        None => host == pattern,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_and_wildcard() {
        assert!(host_matches("slack.com", "slack.com"));
        assert!(host_matches("slack.com", "SLACK.com"));
        assert!(!host_matches("slack.com", "api.slack.com"));
        assert!(host_matches("*.salesforce.com", "acme.my.salesforce.com"));
        assert!(!host_matches("*.salesforce.com", "salesforce.com"));
        assert!(!host_matches("*.salesforce.com", "evilsalesforce.com"));
        assert!(!host_matches("*.salesforce.com", "salesforce.com.evil.com"));
        assert!(!host_matches("*.salesforce.com", ".salesforce.com"));
        assert!(!host_matches("*.salesforce.com", "a..salesforce.com"));
        assert!(!host_matches(
            "*.salesforce.com",
            "evil.com/x.salesforce.com"
        ));
        assert!(!host_matches(
            "*.salesforce.com",
            "evil.com#.salesforce.com"
        ));
        assert!(!host_matches("*.salesforce.com", "u@x.salesforce.com"));
    }
}
