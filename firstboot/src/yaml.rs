//! Writing YAML by hand: every scalar string is emitted double-quoted with
//! JSON escapes, which YAML 1.2 reads back exactly (JSON is a subset of
//! YAML), so no value can break the document's structure.

/// `s` as a double-quoted YAML scalar.
pub fn quote(s: &str) -> String {
    serde_json::to_string(s).expect("strings always serialize")
}

/// `items` as a flow sequence of quoted strings: `["a", "b"]`.
pub fn list<S: AsRef<str>>(items: &[S]) -> String {
    let q: Vec<String> = items.iter().map(|s| quote(s.as_ref())).collect();
    format!("[{}]", q.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_everything_dangerous() {
        assert_eq!(quote("plain"), "\"plain\"");
        assert_eq!(quote("a: b # c"), "\"a: b # c\"");
        assert_eq!(
            quote("quote\" back\\ nl\n tab\t"),
            r#""quote\" back\\ nl\n tab\t""#
        );
        assert_eq!(quote("\u{1}"), "\"\\u0001\"");
        assert_eq!(list(&["x", "y"]), "[\"x\", \"y\"]");
    }
}
