//! Where a field is written: a field path such as `files[2].sha256` mapped
//! back to a 1-based line and column in the TOML source, so every semantic
//! error can point at the text. A field that is missing points at the table
//! that should contain it (or at 1:1 for the top level).

use std::ops::Range;

use toml_edit::{ImDocument, Item, Table, Value};

/// One step of a field path.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Step<'a> {
    Key(&'a str),
    Index(usize),
}

/// `a.b[2].c` → `[Key(a), Key(b), Index(2), Key(c)]`.
fn steps(path: &str) -> Vec<Step<'_>> {
    let mut out = Vec::new();
    for part in path.split('.').filter(|p| !p.is_empty()) {
        let (key, mut rest) = part.split_at(part.find('[').unwrap_or(part.len()));
        if !key.is_empty() {
            out.push(Step::Key(key));
        }
        while let Some(open) = rest.strip_prefix('[') {
            let close = open.find(']').unwrap_or(open.len());
            if let Ok(i) = open[..close].parse() {
                out.push(Step::Index(i));
            }
            rest = open.get(close + 1..).unwrap_or("");
        }
    }
    out
}

/// Byte offset → 1-based line and column (columns count characters).
pub fn line_col(src: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(src.len());
    while !src.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &src[..offset];
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (
        before.matches('\n').count() + 1,
        before[line_start..].chars().count() + 1,
    )
}

#[derive(Clone, Copy)]
enum Node<'a> {
    Item(&'a Item),
    Value(&'a Value),
    Table(&'a Table),
}

/// The child of `node` at `step`, and the span that best shows it.
fn child<'a>(node: Node<'a>, step: &Step<'_>) -> Option<(Node<'a>, Option<Range<usize>>)> {
    match (node, step) {
        (Node::Item(item), Step::Key(k)) => {
            let (key, it) = item.as_table_like()?.get_key_value(k)?;
            Some((Node::Item(it), key.span().or_else(|| it.span())))
        }
        (Node::Table(t), Step::Key(k)) => {
            let (key, it) = t.get_key_value(k)?;
            Some((Node::Item(it), key.span().or_else(|| it.span())))
        }
        (Node::Value(Value::InlineTable(t)), Step::Key(k)) => {
            let (key, it) = t.get_key_value(k)?;
            Some((Node::Item(it), key.span().or_else(|| it.span())))
        }
        (Node::Item(Item::ArrayOfTables(a)), Step::Index(i)) => {
            let t = a.get(*i)?;
            Some((Node::Table(t), t.span()))
        }
        (Node::Item(Item::Value(Value::Array(a))), Step::Index(i))
        | (Node::Value(Value::Array(a)), Step::Index(i)) => {
            let v = a.get(*i)?;
            Some((Node::Value(v), v.span()))
        }
        _ => None,
    }
}

/// The line and column of `field` in `src`: its deepest part that exists.
pub fn position(src: &str, field: &str) -> (usize, usize) {
    let Ok(doc) = ImDocument::parse(src) else {
        return (1, 1);
    };
    let mut node = Node::Item(doc.as_item());
    let mut best: Option<Range<usize>> = None;
    for step in steps(field) {
        match child(node, &step) {
            Some((next, span)) => {
                node = next;
                best = span.or(best);
            }
            None => break,
        }
    }
    best.map_or((1, 1), |r| line_col(src, r.start))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SRC: &str = "version = 1\n\n[[users]]\nname = \"a\"\n\n[[users]]\nname = \"b\"\nssh_authorized_keys = [\n  \"k1\",\n  \"k2\",\n]\n\n[etcd]\nmode = \"join\"\nfiles = [{ path = \"/x\" }]\n";

    #[test]
    fn finds_fields() {
        assert_eq!(position(SRC, "version"), (1, 1));
        assert_eq!(position(SRC, "users[1].name"), (7, 1));
        assert_eq!(position(SRC, "users[1].ssh_authorized_keys[1]"), (10, 3));
        assert_eq!(position(SRC, "etcd.mode"), (14, 1));
        assert_eq!(position(SRC, "etcd.files[0].path"), (15, 12));
    }

    #[test]
    fn missing_fields_point_at_their_table() {
        assert_eq!(position(SRC, "users[1].groups"), (6, 1));
        assert_eq!(position(SRC, "etcd.name"), (13, 2));
        assert_eq!(position(SRC, "kubelet.api_server"), (1, 1));
    }

    #[test]
    fn columns_count_characters() {
        assert_eq!(line_col("é = 1\nab", 8), (2, 2));
    }
}
