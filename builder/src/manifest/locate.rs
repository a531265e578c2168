//! Map a field path such as `users[1].ssh_authorized_keys[0]` back to the
//! line and column where it is written, so semantic errors can point at it.

use toml_edit::{ImDocument, Item, Value};

/// One step of a field path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seg {
    /// A table key.
    Key(String),
    /// An array index.
    Index(usize),
}

/// Render a path as `a.b[2].c`.
#[cfg(test)]
pub fn render(path: &[Seg]) -> String {
    let mut s = String::new();
    for seg in path {
        match seg {
            Seg::Key(k) => {
                if !s.is_empty() {
                    s.push('.');
                }
                s.push_str(k);
            }
            Seg::Index(i) => s.push_str(&format!("[{i}]")),
        }
    }
    s
}

/// Parse `a.b[2].c` into segments (the inverse of [`render`]).
pub fn parse(path: &str) -> Vec<Seg> {
    let mut out = Vec::new();
    for part in path.split('.') {
        let mut rest = part;
        if let Some(b) = rest.find('[') {
            if b > 0 {
                out.push(Seg::Key(rest[..b].to_string()));
            }
            rest = &rest[b..];
            while let Some(stripped) = rest.strip_prefix('[') {
                let end = stripped.find(']').unwrap_or(stripped.len());
                if let Ok(i) = stripped[..end].parse() {
                    out.push(Seg::Index(i));
                }
                rest = stripped.get(end + 1..).unwrap_or("");
            }
        } else if !rest.is_empty() {
            out.push(Seg::Key(rest.to_string()));
        }
    }
    out
}

/// Find the best span for `path`: the deepest element that exists. For a key
/// the span of the key itself is used (where a reader's eye goes).
pub fn locate(src: &str, path: &[Seg]) -> Option<(usize, usize)> {
    let doc = ImDocument::parse(src.to_string()).ok()?;
    let mut best: Option<std::ops::Range<usize>> = None;
    let mut cur = Node::Item(doc.as_item());
    for seg in path {
        let next = match (&cur, seg) {
            (Node::Item(item), Seg::Key(k)) => item.as_table_like().and_then(|t| {
                let (key, it) = t.get_key_value(k)?;
                best = key.span().or_else(|| it.span()).or(best.clone());
                Some(Node::Item(it))
            }),
            (Node::Value(v), Seg::Key(k)) => v.as_inline_table().and_then(|t| {
                let (key, it) = t.get_key_value(k)?;
                best = key.span().or_else(|| it.span()).or(best.clone());
                Some(Node::Item(it))
            }),
            (Node::Item(Item::ArrayOfTables(a)), Seg::Index(i)) => a.get(*i).map(|t| {
                best = t.span().or(best.clone());
                Node::Table(t)
            }),
            (Node::Item(Item::Value(Value::Array(a))), Seg::Index(i))
            | (Node::Value(Value::Array(a)), Seg::Index(i)) => a.get(*i).map(|v| {
                best = v.span().or(best.clone());
                Node::Value(v)
            }),
            (Node::Table(t), Seg::Key(k)) => t.get_key_value(k).map(|(key, it)| {
                best = key.span().or_else(|| it.span()).or(best.clone());
                Node::Item(it)
            }),
            _ => None,
        };
        match next {
            Some(n) => cur = n,
            None => break,
        }
    }
    best.map(|r| crate::model::line_col(src, r.start))
}

enum Node<'a> {
    Item(&'a Item),
    Value(&'a Value),
    Table(&'a toml_edit::Table),
}

// `Item::Value` holding an inline table is handled through `as_table_like`.

#[cfg(test)]
mod tests {
    use super::*;

    const SRC: &str = "[image]\nname = \"x\"\n\n[[users]]\nname = \"a\"\n\n[[users]]\nname = \"b\"\nssh_authorized_keys = [\n  \"k1\",\n  \"k2\",\n]\n";

    #[test]
    fn finds_nested_array_of_tables_entries() {
        assert_eq!(locate(SRC, &parse("image.name")), Some((2, 1)));
        assert_eq!(locate(SRC, &parse("users[1].name")), Some((8, 1)));
        assert_eq!(
            locate(SRC, &parse("users[1].ssh_authorized_keys[1]")),
            Some((11, 3))
        );
    }

    #[test]
    fn falls_back_to_deepest_existing_element() {
        assert_eq!(locate(SRC, &parse("users[1].groups")), Some((7, 1)));
    }

    #[test]
    fn path_round_trips() {
        let p = parse("users[1].ssh_authorized_keys[0]");
        assert_eq!(render(&p), "users[1].ssh_authorized_keys[0]");
    }
}
