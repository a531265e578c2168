//! `atomicbuild diff OLD.json NEW.json`: what changed between two builds,
//! from their build metadata: packages added, removed and changed (with
//! installed sizes), the kernel, its arguments and the initramfs, partition
//! sizes, and every output's size and allocated bytes. As text, JSON or
//! Markdown (for a CI comment).

use std::collections::BTreeMap;
use std::fmt::Write;

use serde::Serialize;

use crate::model::{Metadata, Package};

/// How `diff` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DiffFormat {
    /// Lines for a terminal.
    Text,
    /// One JSON object.
    Json,
    /// Tables for a pull request or CI comment.
    Markdown,
}

/// A value before and after (None: absent on that side).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Change<T> {
    /// In the old build.
    pub old: Option<T>,
    /// In the new build.
    pub new: Option<T>,
}

impl Change<u64> {
    /// new - old (absent counts as 0).
    pub fn delta(&self) -> i128 {
        i128::from(self.new.unwrap_or(0)) - i128::from(self.old.unwrap_or(0))
    }
}

/// One package that differs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PackageChange {
    /// Its name.
    pub name: String,
    /// Versions (None: not installed on that side).
    pub version: Change<String>,
    /// Installed bytes.
    pub installed_bytes: Change<u64>,
}

/// One output file, matched across builds by what follows `NAME-VERSION`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OutputChange {
    /// `.raw`, `.qcow2`, `.vmdk`, ...
    pub kind: String,
    /// Apparent size.
    pub size: Change<u64>,
    /// Bytes allocated.
    pub allocated: Change<u64>,
}

/// What differs between two builds.
#[derive(Debug, Clone, Serialize)]
pub struct Diff {
    /// "NAME VERSION (commit)" of the old build.
    pub old: String,
    /// The same of the new one.
    pub new: String,
    /// Whether the OSTree commits differ.
    pub commit_changed: bool,
    /// Packages added, removed or of another version or size.
    pub packages: Vec<PackageChange>,
    /// Sum of installed sizes.
    pub installed_bytes: Change<u64>,
    /// Kernel version, when it changed.
    pub kernel: Option<Change<String>>,
    /// Kernel command line, when it changed.
    pub kernel_args: Option<Change<String>>,
    /// Initramfs size.
    pub initramfs_bytes: Change<u64>,
    /// Partition sizes by name.
    pub partitions: Vec<(String, Change<u64>)>,
    /// Outputs.
    pub outputs: Vec<OutputChange>,
}

fn ident(m: &Metadata) -> String {
    format!(
        "{} {} ({})",
        m.name,
        m.version,
        &m.ostree.commit[..12.min(m.ostree.commit.len())]
    )
}

fn changed<T: PartialEq>(old: T, new: T) -> Option<Change<T>> {
    (old != new).then_some(Change {
        old: Some(old),
        new: Some(new),
    })
}

fn both(old: u64, new: u64) -> Change<u64> {
    Change {
        old: Some(old),
        new: Some(new),
    }
}

/// The values of both builds under every key either has, in key order.
fn pair_up<V>(old: BTreeMap<String, V>, mut new: BTreeMap<String, V>) -> Vec<(String, Change<V>)> {
    let mut out: Vec<(String, Change<V>)> = old
        .into_iter()
        .map(|(k, v)| {
            let n = new.remove(&k);
            (
                k,
                Change {
                    old: Some(v),
                    new: n,
                },
            )
        })
        .collect();
    out.extend(new.into_iter().map(|(k, v)| {
        (
            k,
            Change {
                old: None,
                new: Some(v),
            },
        )
    }));
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

impl<T> Change<T> {
    /// Both sides through `f`.
    fn map<U>(&self, f: impl Fn(&T) -> U) -> Change<U> {
        Change {
            old: self.old.as_ref().map(&f),
            new: self.new.as_ref().map(&f),
        }
    }
}

/// Compare two builds.
pub fn diff(old: &Metadata, new: &Metadata) -> Diff {
    let by_name = |m: &Metadata| -> BTreeMap<String, Package> {
        m.packages
            .iter()
            .map(|p| (p.name.clone(), p.clone()))
            .collect()
    };
    let packages = pair_up(by_name(old), by_name(new))
        .into_iter()
        .filter(|(_, c)| c.old.as_ref().map(seen) != c.new.as_ref().map(seen))
        .map(|(name, c)| PackageChange {
            name,
            version: c.map(|p| p.version.clone()),
            installed_bytes: c.map(|p| p.installed_bytes),
        })
        .collect();
    let total = |m: &Metadata| m.packages.iter().map(|p| p.installed_bytes).sum::<u64>();
    let parts = |m: &Metadata| -> BTreeMap<String, u64> {
        m.disk
            .partitions
            .iter()
            .map(|p| (p.name.clone(), p.size))
            .collect()
    };
    Diff {
        old: ident(old),
        new: ident(new),
        commit_changed: old.ostree.commit != new.ostree.commit,
        packages,
        installed_bytes: both(total(old), total(new)),
        kernel: changed(old.kernel.version.clone(), new.kernel.version.clone()),
        kernel_args: changed(old.kernel.cmdline.join(" "), new.kernel.cmdline.join(" ")),
        initramfs_bytes: both(old.kernel.initramfs_bytes, new.kernel.initramfs_bytes),
        partitions: pair_up(parts(old), parts(new)),
        outputs: outputs(old, new),
    }
}

/// What a package diff compares: its version and installed size.
fn seen(p: &Package) -> (&str, u64) {
    (&p.version, p.installed_bytes)
}

/// Outputs matched by the part of their file name after `NAME-VERSION`.
fn outputs(old: &Metadata, new: &Metadata) -> Vec<OutputChange> {
    let kinds = |m: &Metadata| -> BTreeMap<String, (u64, u64)> {
        let stem = format!("{}-{}", m.name, m.version);
        m.artifacts
            .iter()
            .map(|a| {
                let kind = a.file.strip_prefix(&stem).unwrap_or(&a.file).to_string();
                (kind, (a.size, a.allocated))
            })
            .collect()
    };
    pair_up(kinds(old), kinds(new))
        .into_iter()
        .map(|(kind, c)| OutputChange {
            kind,
            size: c.map(|x| x.0),
            allocated: c.map(|x| x.1),
        })
        .collect()
}

/// Bytes for people: "1.5 MiB".
fn human(b: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    match u {
        0 => format!("{b} B"),
        _ => format!("{v:.1} {}", UNITS[u]),
    }
}

/// A signed delta for people: "+1.5 MiB", "-12 B", "±0".
fn signed(d: i128) -> String {
    match d.cmp(&0) {
        std::cmp::Ordering::Equal => "±0".into(),
        std::cmp::Ordering::Greater => format!("+{}", human(d as u64)),
        std::cmp::Ordering::Less => format!("-{}", human(d.unsigned_abs() as u64)),
    }
}

fn opt_human(v: Option<u64>) -> String {
    v.map_or_else(|| "-".into(), human)
}

fn sizes(c: &Change<u64>) -> String {
    format!(
        "{} → {} ({})",
        opt_human(c.old),
        opt_human(c.new),
        signed(c.delta())
    )
}

impl Diff {
    /// Counts of added, removed and changed packages.
    pub fn package_counts(&self) -> (usize, usize, usize) {
        let mut n = (0, 0, 0);
        for p in &self.packages {
            match (&p.version.old, &p.version.new) {
                (None, Some(_)) => n.0 += 1,
                (Some(_), None) => n.1 += 1,
                _ => n.2 += 1,
            }
        }
        n
    }

    /// Render in `format`.
    pub fn render(&self, format: DiffFormat) -> String {
        match format {
            DiffFormat::Text => self.text(),
            DiffFormat::Markdown => self.markdown(),
            DiffFormat::Json => serde_json::to_string_pretty(self).unwrap_or_default() + "\n",
        }
    }

    fn package_line(p: &PackageChange) -> (char, String) {
        let d = signed(p.installed_bytes.delta());
        match (&p.version.old, &p.version.new) {
            (None, Some(v)) => ('+', format!("{} {v} ({d})", p.name)),
            (Some(v), None) => ('-', format!("{} {v} ({d})", p.name)),
            (Some(o), Some(n)) if o == n => ('~', format!("{} {o}: size {d}", p.name)),
            (o, n) => (
                '~',
                format!(
                    "{} {} → {} ({d})",
                    p.name,
                    o.as_deref().unwrap_or("-"),
                    n.as_deref().unwrap_or("-")
                ),
            ),
        }
    }

    fn text(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "{} → {}", self.old, self.new);
        if !self.commit_changed {
            let _ = writeln!(s, "the same OSTree commit");
        }
        let (add, del, chg) = self.package_counts();
        let _ = writeln!(
            s,
            "packages: {add} added, {del} removed, {chg} changed; installed size {}",
            sizes(&self.installed_bytes)
        );
        for p in &self.packages {
            let (mark, line) = Self::package_line(p);
            let _ = writeln!(s, "  {mark} {line}");
        }
        if let Some(k) = &self.kernel {
            let _ = writeln!(
                s,
                "kernel: {} → {}",
                k.old.as_deref().unwrap_or("-"),
                k.new.as_deref().unwrap_or("-")
            );
        }
        if let Some(k) = &self.kernel_args {
            let _ = writeln!(
                s,
                "kernel arguments: {} → {}",
                k.old.as_deref().unwrap_or("-"),
                k.new.as_deref().unwrap_or("-")
            );
        }
        let _ = writeln!(s, "initramfs: {}", sizes(&self.initramfs_bytes));
        let _ = writeln!(s, "partitions:");
        for (n, c) in &self.partitions {
            let _ = writeln!(s, "  {n}: {}", sizes(c));
        }
        let _ = writeln!(s, "outputs (allocated on disk; apparent size):");
        for o in &self.outputs {
            let _ = writeln!(
                s,
                "  {}: {}; {}",
                o.kind,
                sizes(&o.allocated),
                sizes(&o.size)
            );
        }
        s
    }

    fn markdown(&self) -> String {
        let mut s = String::new();
        let (add, del, chg) = self.package_counts();
        let _ = writeln!(s, "### {} → {}\n", self.old, self.new);
        let _ = writeln!(
            s,
            "**Packages:** {add} added, {del} removed, {chg} changed; installed size {}\n",
            sizes(&self.installed_bytes)
        );
        if !self.packages.is_empty() {
            let _ = writeln!(
                s,
                "| | package | old | new | installed size |\n|---|---|---|---|---|"
            );
            for p in &self.packages {
                let (mark, _) = Self::package_line(p);
                let _ = writeln!(
                    s,
                    "| {mark} | {} | {} | {} | {} |",
                    p.name,
                    p.version.old.as_deref().unwrap_or("—"),
                    p.version.new.as_deref().unwrap_or("—"),
                    signed(p.installed_bytes.delta())
                );
            }
            s.push('\n');
        }
        let _ = writeln!(s, "| | old | new | change |\n|---|---|---|---|");
        if let Some(k) = &self.kernel {
            let _ = writeln!(
                s,
                "| kernel | {} | {} | |",
                k.old.as_deref().unwrap_or("—"),
                k.new.as_deref().unwrap_or("—")
            );
        }
        let row = |s: &mut String, name: &str, c: &Change<u64>| {
            let _ = writeln!(
                s,
                "| {name} | {} | {} | {} |",
                opt_human(c.old),
                opt_human(c.new),
                signed(c.delta())
            );
        };
        row(&mut s, "initramfs", &self.initramfs_bytes);
        for (n, c) in &self.partitions {
            row(&mut s, &format!("partition {n}"), c);
        }
        for o in &self.outputs {
            row(&mut s, &format!("{} (allocated)", o.kind), &o.allocated);
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::metadata::fixtures::fixture as meta;

    #[test]
    fn packages_added_removed_changed_and_sizes() {
        let old = meta(
            "1",
            "aaaaaaaaaaaa1",
            &[
                ("bash", "5.2-1", 7000),
                ("curl", "7.88", 500),
                ("vim", "9.0", 3000),
            ],
            1200 << 20,
        );
        let mut new = meta(
            "2",
            "bbbbbbbbbbbb2",
            &[
                ("bash", "5.2-2", 7010),
                ("jq", "1.6", 100),
                ("vim", "9.0", 3000),
            ],
            1201 << 20,
        );
        new.kernel.version = "6.1.0-58-amd64".into();
        let d = diff(&old, &new);
        assert!(d.commit_changed);
        assert_eq!(d.package_counts(), (1, 1, 1));
        let names: Vec<&str> = d.packages.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["bash", "curl", "jq"], "vim is unchanged");
        assert_eq!(d.installed_bytes.delta(), (10 + 100 - 500) * 1024);
        assert_eq!(
            d.kernel.as_ref().unwrap().new.as_deref(),
            Some("6.1.0-58-amd64")
        );
        assert!(d.kernel_args.is_none());
        let raw = d.outputs.iter().find(|o| o.kind == ".raw").unwrap();
        assert_eq!(raw.allocated.delta(), 1 << 20);
        assert_eq!(
            d.outputs.len(),
            2,
            "outputs matched across versions: {:?}",
            d.outputs
        );

        let t = d.render(DiffFormat::Text);
        for want in [
            "host 1 (aaaaaaaaaaaa) → host 2 (bbbbbbbbbbbb)",
            "packages: 1 added, 1 removed, 1 changed",
            "+ jq 1.6 (+100.0 KiB)",
            "- curl 7.88 (-500.0 KiB)",
            "~ bash 5.2-1 → 5.2-2 (+10.0 KiB)",
            "kernel: 6.1.0-57-amd64 → 6.1.0-58-amd64",
            ".raw: 1.2 GiB → 1.2 GiB (+1.0 MiB)",
        ] {
            assert!(t.contains(want), "no {want:?} in:\n{t}");
        }
        let md = d.render(DiffFormat::Markdown);
        assert!(md.contains("| + | jq | — | 1.6 | +100.0 KiB |"), "{md}");
        let j: serde_json::Value = serde_json::from_str(&d.render(DiffFormat::Json)).unwrap();
        assert_eq!(j["packages"][2]["version"]["new"], "1.6");
        assert_eq!(j["packages"][1]["version"]["new"], serde_json::Value::Null);
    }

    #[test]
    fn the_same_build_differs_in_nothing() {
        let m = meta("1", "c", &[("bash", "5.2-1", 7000)], 1 << 30);
        let d = diff(&m, &m);
        assert!(!d.commit_changed && d.packages.is_empty() && d.kernel.is_none());
        assert!(d.outputs.iter().all(|o| o.size.delta() == 0));
        assert!(d
            .render(DiffFormat::Text)
            .contains("the same OSTree commit"));
    }
}
