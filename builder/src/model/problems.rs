//! Collecting every problem of a manifest at once: each section's checks
//! (next to the code that owns the section) report `(field path, message)`
//! into a [`Scope`], which prefixes the section's path, so a check writes
//! `region` and the user reads `upload[2].region`.

/// `(field path, message)` pairs, in the order they were found.
#[derive(Debug, Default)]
pub struct Problems {
    list: Vec<(String, String)>,
}

impl Problems {
    /// None yet.
    pub fn new() -> Problems {
        Problems::default()
    }

    /// A scope whose fields are `prefix.FIELD` (or `prefix` itself).
    pub fn scope(&mut self, prefix: impl Into<String>) -> Scope<'_> {
        Scope {
            problems: self,
            prefix: prefix.into(),
        }
    }

    /// Record a problem at a full field path.
    pub fn bad(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.list.push((field.into(), message.into()));
    }

    /// Whether nothing was found.
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// How many were found so far.
    pub fn len(&self) -> usize {
        self.list.len()
    }

    /// Everything found.
    pub fn into_vec(self) -> Vec<(String, String)> {
        self.list
    }
}

/// The problems of one section (or list item) of the manifest.
pub struct Scope<'a> {
    problems: &'a mut Problems,
    prefix: String,
}

impl Scope<'_> {
    fn path(&self, field: &str) -> String {
        match (self.prefix.is_empty(), field.is_empty()) {
            (true, _) => field.to_string(),
            (false, true) => self.prefix.clone(),
            (false, false) if field.starts_with('[') => format!("{}{field}", self.prefix),
            (false, false) => format!("{}.{field}", self.prefix),
        }
    }

    /// Record a problem at `field` below this scope ("" for the scope
    /// itself, `[2]` for an item of a list scope).
    pub fn bad(&mut self, field: &str, message: impl Into<String>) {
        let f = self.path(field);
        self.problems.bad(f, message);
    }

    /// A narrower scope: `field` below this one.
    pub fn scope(&mut self, field: &str) -> Scope<'_> {
        let prefix = self.path(field);
        Scope {
            problems: self.problems,
            prefix,
        }
    }

    /// How many problems the whole manifest has so far.
    pub fn count(&self) -> usize {
        self.problems.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_prefix_field_paths() {
        let mut p = Problems::new();
        {
            let mut up = p.scope("upload");
            up.scope("[2]").bad("region", "bad region");
            up.scope("[0]").scope("copy_to_regions[1]").bad("", "twice");
            up.bad("", "the list itself");
        }
        p.scope("").bad("disk.size", "too small");
        assert_eq!(
            p.into_vec(),
            vec![
                ("upload[2].region".to_string(), "bad region".to_string()),
                ("upload[0].copy_to_regions[1]".into(), "twice".into()),
                ("upload".into(), "the list itself".into()),
                ("disk.size".into(), "too small".into()),
            ]
        );
    }
}
