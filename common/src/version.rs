//! Comparing image versions (`[image] version`, recorded as the OSTree
//! commit's `version`): the builder refuses to publish a lower version than
//! the published one, and the update agent never moves a host to a lower
//! one. Versions are split into runs of digits and of other characters;
//! digit runs compare as numbers, others as text, `~` sorting before
//! anything (as Debian's `1.0~rc1` < `1.0`), so `1.10` > `1.9` and
//! `2` > `1.99`.

use std::cmp::Ordering;

fn parts(v: &str) -> Vec<(bool, &str)> {
    let mut out = Vec::new();
    let mut start = 0;
    let b = v.as_bytes();
    for i in 1..=b.len() {
        if i == b.len() || b[i].is_ascii_digit() != b[start].is_ascii_digit() {
            out.push((b[start].is_ascii_digit(), &v[start..i]));
            start = i;
        }
    }
    out
}

fn text_cmp(a: &str, b: &str) -> Ordering {
    let key = |c: char| match c {
        '~' => (0, c),
        _ => (1, c),
    };
    let (mut x, mut y) = (a.chars(), b.chars());
    loop {
        match (x.next(), y.next()) {
            (None, None) => return Ordering::Equal,
            (Some('~'), None) => return Ordering::Less,
            (None, Some('~')) => return Ordering::Greater,
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(p), Some(q)) => match key(p).cmp(&key(q)) {
                Ordering::Equal => continue,
                o => return o,
            },
        }
    }
}

fn num_cmp(a: &str, b: &str) -> Ordering {
    let (a, b) = (a.trim_start_matches('0'), b.trim_start_matches('0'));
    a.len().cmp(&b.len()).then_with(|| a.cmp(b))
}

/// Compare two versions.
pub fn compare(a: &str, b: &str) -> Ordering {
    let (pa, pb) = (parts(a), parts(b));
    for i in 0..pa.len().max(pb.len()) {
        let o = match (pa.get(i), pb.get(i)) {
            (Some((true, x)), Some((true, y))) => num_cmp(x, y),
            (Some((_, x)), Some((_, y))) => text_cmp(x, y),
            (Some((_, x)), None) if x.starts_with('~') => Ordering::Less,
            (None, Some((_, y))) if y.starts_with('~') => Ordering::Greater,
            (Some(_), None) => Ordering::Greater,
            (None, Some(_)) => Ordering::Less,
            (None, None) => Ordering::Equal,
        };
        if o != Ordering::Equal {
            return o;
        }
    }
    Ordering::Equal
}

#[cfg(test)]
mod tests {
    use super::*;
    use Ordering::*;

    #[test]
    fn versions_compare_as_people_read_them() {
        for (a, b, o) in [
            ("1", "1", Equal),
            ("2", "1", Greater),
            ("1.10", "1.9", Greater),
            ("2", "1.99", Greater),
            ("0.1.0", "0.1.1", Less),
            ("1.0", "1.0.1", Less),
            ("1.0~rc1", "1.0", Less),
            ("1.0", "1.0~rc1", Greater),
            ("1.0a", "1.0b", Less),
            ("01", "1", Equal),
            ("2026.11.30", "2026.12.1", Less),
        ] {
            assert_eq!(compare(a, b), o, "{a} vs {b}");
        }
    }
}
