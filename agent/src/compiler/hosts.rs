//! Host names in mesh objects (OSM `Egress` hosts, ServiceEntry endpoint
//! names): checked here, kept symbolic in the [`super::Policy`], resolved
//! by the runtime, and turned into addresses by [`super::bind`].
use std::net::IpAddr;

use super::Ctx;

/// What a host string of a mesh object is.
#[derive(Debug, PartialEq, Eq)]
pub enum Host {
    /// A literal address (no lookup needed).
    Ip(IpAddr),
    /// A DNS name, lower-case without the trailing dot.
    Name(String),
}

/// Parse a host: an IP literal or a DNS name. Wildcards and names that
/// are not valid DNS names are refused with the reason.
pub fn parse_host(text: &str) -> Result<Host, String> {
    let trimmed = text.trim();
    if let Ok(ip) = trimmed.parse::<IpAddr>() {
        return Ok(Host::Ip(ip));
    }
    let name = trimmed.trim_end_matches('.').to_ascii_lowercase();
    if name.starts_with("*.") || name == "*" {
        return Err(format!("{text:?} is a wildcard: it cannot be resolved to addresses"));
    }
    if name.is_empty() || name.len() > 253 {
        return Err(format!("{text:?} is not a valid DNS name (1 to 253 characters)"));
    }
    let labels_ok = name.split('.').all(|label| {
        !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    });
    if !labels_ok {
        return Err(format!("{text:?} is not a valid DNS name"));
    }
    // `1.2.3` or `10.0.0.300`: a mistyped address, which some resolvers
    // would still turn into one (no top-level domain is all digits).
    if name.rsplit('.').next().is_some_and(|tld| tld.bytes().all(|b| b.is_ascii_digit())) {
        return Err(format!("{text:?} is neither an IP address nor a DNS name (its last label is a number)"));
    }
    Ok(Host::Name(name))
}

impl Ctx<'_> {
    /// Records that `name` must be resolved.
    pub(crate) fn want_host(&mut self, name: &str) {
        self.hosts.insert(name.to_owned());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ips_names_and_refuses_bad_ones() {
        assert_eq!(parse_host("10.0.0.1"), Ok(Host::Ip("10.0.0.1".parse().expect("ip"))));
        assert_eq!(parse_host("2001:db8::1"), Ok(Host::Ip("2001:db8::1".parse().expect("ip"))));
        assert_eq!(parse_host("HTTPBin.org."), Ok(Host::Name("httpbin.org".into())));
        assert!(parse_host("*.example.com").is_err());
        assert!(parse_host("").is_err());
        assert!(parse_host("a..b").is_err());
        assert!(parse_host("-a.example").is_err());
        assert!(parse_host("a b.example").is_err());
        assert!(parse_host(&"a".repeat(64)).is_err());
        assert!(parse_host("1.2.3").is_err(), "mistyped address");
        assert!(parse_host("10.0.0.300").is_err(), "mistyped address");
        assert!(parse_host("10.0.0.0/8").is_err(), "a CIDR is not a host");
        assert!(parse_host("httpbin.org:80").is_err(), "no port");
        assert_eq!(parse_host(" 3com.example "), Ok(Host::Name("3com.example".into())));
    }
}
