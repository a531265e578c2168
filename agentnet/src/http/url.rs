//! `http://` and `https://` URLs: just the parts a request needs.

use std::fmt;

/// An `http://` or `https://` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    /// `https://`?
    pub https: bool,
    /// Host name or IP address (IPv6 without brackets).
    pub host: String,
    /// Port (the scheme's default when not written).
    pub port: u16,
    /// Path and query, starting with `/`.
    pub path: String,
}

impl Url {
    /// Parse `scheme://host[:port][/path]`. User info and fragments are refused.
    pub fn parse(s: &str) -> Result<Url, String> {
        let (https, rest) = if let Some(r) = s.strip_prefix("https://") {
            (true, r)
        } else if let Some(r) = s.strip_prefix("http://") {
            (false, r)
        } else {
            return Err("must start with http:// or https://".into());
        };
        if s.contains('#') || s.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err("must not contain spaces or a #fragment".into());
        }
        let (authority, path) = match rest.find(['/', '?']) {
            Some(i) if rest[i..].starts_with('/') => (&rest[..i], rest[i..].to_string()),
            Some(i) => (&rest[..i], format!("/{}", &rest[i..])),
            None => (rest, "/".to_string()),
        };
        if authority.contains('@') {
            return Err("must not contain user info (user@host)".into());
        }
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let end = v6.find(']').ok_or("unclosed [ in the host")?;
            let port = match &v6[end + 1..] {
                "" => None,
                after => Some(after.strip_prefix(':').ok_or("has text after ]")?),
            };
            if v6[..end].parse::<std::net::Ipv6Addr>().is_err() {
                return Err("has no IPv6 address in [ ]".into());
            }
            (&v6[..end], port)
        } else {
            let (h, p) = match authority.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (authority, None),
            };
            if !h
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
            {
                return Err(
                    "has a host that is neither a name nor an address (IPv6 goes in [ ])".into(),
                );
            }
            (h, p)
        };
        if host.is_empty() {
            return Err("has no host".into());
        }
        let port = match port {
            Some(p) => p
                .parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or("has an invalid port")?,
            None if https => 443,
            None => 80,
        };
        Ok(Url {
            https,
            host: host.to_string(),
            port,
            path,
        })
    }

    /// `host:port` (IPv6 in brackets).
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// This URL's scheme and authority with another path.
    pub fn with_path(&self, path: &str) -> Url {
        let base = self
            .path
            .split('?')
            .next()
            .unwrap_or("")
            .trim_end_matches('/');
        Url {
            path: format!("{base}{path}"),
            ..self.clone()
        }
    }

    /// The URL without its query string (which may carry credentials).
    pub fn redacted(&self) -> String {
        let path = self.path.split('?').next().unwrap_or("/");
        let scheme = if self.https { "https" } else { "http" };
        format!("{scheme}://{}{path}", self.authority())
    }
}

impl fmt::Display for Url {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.https { "https" } else { "http" };
        write!(f, "{scheme}://{}{}", self.authority(), self.path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_urls() {
        let u = Url::parse("https://10.0.0.1:2379").unwrap();
        assert_eq!(
            (u.https, u.host.as_str(), u.port, u.path.as_str()),
            (true, "10.0.0.1", 2379, "/")
        );
        let u = Url::parse("http://169.254.169.254/latest/user-data").unwrap();
        assert_eq!((u.port, u.path.as_str()), (80, "/latest/user-data"));
        let u = Url::parse("https://[fd00::1]:6443/x?y=1").unwrap();
        assert_eq!((u.host.as_str(), u.port), ("fd00::1", 6443));
        assert_eq!(u.authority(), "[fd00::1]:6443");
        assert_eq!(u.redacted(), "https://[fd00::1]:6443/x");
        let u = Url::parse("http://h?x").unwrap();
        assert_eq!(u.path, "/?x");
        assert_eq!(
            Url::parse("http://127.0.0.1:1/base/")
                .unwrap()
                .with_path("/a")
                .path,
            "/base/a"
        );
        for bad in [
            "ftp://x",
            "http://",
            "http://u:p@h/",
            "http://h:99999",
            "http://h:0",
            "http://h/a b",
            "https://h/#f",
            // Found by the fuzzer (builder/tests/parsers_fuzz.rs): these
            // parsed, and printed back as URLs that do not.
            "http://12]:7.0.0.1:9/",
            "http://[::1]x/",
            "http://[not-v6]:80/",
            "http://a:b:80/",
        ] {
            assert!(Url::parse(bad).is_err(), "{bad}");
        }
    }
}
