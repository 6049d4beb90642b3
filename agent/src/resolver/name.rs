//! Host names as the resolver handles them: normalisation (lowercase, no
//! trailing dot) and the check that a name can be sent to a name server.
use std::net::IpAddr;

use super::error::ResolveError;

/// Longest name in presentation form, without the trailing dot (RFC 1035).
pub const MAX_NAME_LEN: usize = 253;
/// Longest label (RFC 1035).
pub const MAX_LABEL_LEN: usize = 63;

/// Lowercases `host` and removes one trailing dot (`HttpBin.org.` →
/// `httpbin.org`).
pub fn normalize(host: &str) -> String {
    let lower = host.to_ascii_lowercase();
    match lower.strip_suffix('.') {
        Some(stripped) => stripped.to_string(),
        None => lower,
    }
}

/// The address when `host` is a literal IPv4 or IPv6 address.
pub fn literal(host: &str) -> Option<IpAddr> {
    host.parse().ok()
}

/// Checks that the normalised `name` is a DNS name that can be queried:
/// non-empty labels of at most 63 characters, at most 253 characters in
/// all, only letters, digits, `-` and `_`, and no wildcard. `host` is the
/// name as given, for the error.
pub fn validate(host: &str, name: &str) -> Result<(), ResolveError> {
    let invalid = |reason| {
        Err(ResolveError::InvalidName {
            host: host.to_string(),
            reason,
        })
    };
    if name.is_empty() {
        return invalid("the name is empty");
    }
    if name == "*" || name.starts_with("*.") {
        return invalid("wildcard names cannot be resolved");
    }
    if name.len() > MAX_NAME_LEN {
        return invalid("the name is longer than 253 characters");
    }
    for label in name.split('.') {
        if label.is_empty() {
            return invalid("the name has an empty label");
        }
        if label.len() > MAX_LABEL_LEN {
            return invalid("a label is longer than 63 characters");
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return invalid("labels may only hold letters, digits, '-' and '_'");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason(name: &str) -> Option<&'static str> {
        match validate(name, &normalize(name)) {
            Ok(()) => None,
            Err(ResolveError::InvalidName { reason, .. }) => Some(reason),
            Err(e) => panic!("unexpected error {e}"),
        }
    }

    #[test]
    fn normalizes_case_and_one_trailing_dot() {
        assert_eq!(normalize("HttpBin.ORG."), "httpbin.org");
        assert_eq!(normalize("httpbin.org"), "httpbin.org");
        assert_eq!(normalize("a.."), "a.");
    }

    #[test]
    fn accepts_ordinary_names() {
        for ok in [
            "httpbin.org",
            "localhost",
            "_sip._tcp.example.com",
            "x-1.example",
            "Example.COM.",
        ] {
            assert_eq!(reason(ok), None, "{ok}");
        }
        assert_eq!(reason(&format!("{}.com", "a".repeat(63))), None);
        let longest = ["a".repeat(63), "b".repeat(63), "c".repeat(63), "d".repeat(61)].join(".");
        assert_eq!(longest.len(), 253);
        assert_eq!(reason(&longest), None);
    }

    #[test]
    fn refuses_invalid_names() {
        assert_eq!(reason(""), Some("the name is empty"));
        assert_eq!(reason("."), Some("the name is empty"));
        assert_eq!(reason("*.example.com"), Some("wildcard names cannot be resolved"));
        assert_eq!(reason("*"), Some("wildcard names cannot be resolved"));
        assert_eq!(reason("a..b"), Some("the name has an empty label"));
        assert_eq!(reason(".a"), Some("the name has an empty label"));
        assert_eq!(reason("a.."), Some("the name has an empty label"));
        assert_eq!(
            reason(&format!("{}.com", "a".repeat(64))),
            Some("a label is longer than 63 characters")
        );
        let too_long = ["a".repeat(63), "b".repeat(63), "c".repeat(63), "d".repeat(62)].join(".");
        assert_eq!(reason(&too_long), Some("the name is longer than 253 characters"));
        for bad in ["bad!char.com", "a b.com", "a/b", "a*.b", "ex\u{e4}mple.com", "a:b"] {
            assert_eq!(
                reason(bad),
                Some("labels may only hold letters, digits, '-' and '_'"),
                "{bad}"
            );
        }
    }

    #[test]
    fn error_names_the_host_as_given() {
        let err = validate("*.Example.com", &normalize("*.Example.com")).expect_err("wildcard");
        assert!(err.to_string().contains("\"*.Example.com\""), "{err}");
    }

    #[test]
    fn literals() {
        assert_eq!(literal("192.0.2.1"), Some("192.0.2.1".parse().expect("ip")));
        assert_eq!(literal("2001:db8::1"), Some("2001:db8::1".parse().expect("ip")));
        assert_eq!(literal("1.2.3"), None);
        assert_eq!(literal("httpbin.org"), None);
    }
}
