//! What names and URLs in `[base]` may look like (a leaf: the base's
//! and the repositories' checks both use it).

/// An http://, https:// or file:// URL without spaces.
pub fn is_url(s: &str) -> bool {
    ["http://", "https://", "file://"]
        .iter()
        .any(|p| s.starts_with(p) && s.len() > p.len() && !s.contains(char::is_whitespace))
}

/// Lowercase letters, digits, `.`, `_`, `-`, starting with a letter or digit.
pub fn is_name(s: &str) -> bool {
    let mut c = s.chars();
    matches!(c.next(), Some(f) if f.is_ascii_lowercase() || f.is_ascii_digit())
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c))
}
