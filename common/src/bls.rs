//! Boot Loader Specification entries, as OSTree writes them under
//! `boot/loader/entries/*.conf`.

use std::fs;
use std::path::Path;

use anyhow::{bail, Context, Result};

/// One BLS entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Menu title.
    pub title: String,
    /// Sort key OSTree assigns (higher is newer).
    pub version: String,
    /// Kernel path relative to the boot partition.
    pub linux: String,
    /// Initramfs path relative to the boot partition.
    pub initrd: Vec<String>,
    /// Kernel command line.
    pub options: String,
}

/// Parse one entry file's text.
pub fn parse(text: &str) -> Result<Entry> {
    let mut e = Entry {
        title: String::new(),
        version: String::new(),
        linux: String::new(),
        initrd: Vec::new(),
        options: String::new(),
    };
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (k, v) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
        let v = v.trim().to_string();
        match k {
            "title" => e.title = v,
            "version" => e.version = v,
            "linux" => e.linux = strip_boot(&v),
            "initrd" => e.initrd.push(strip_boot(&v)),
            "options" => {
                if !e.options.is_empty() {
                    e.options.push(' ');
                }
                e.options.push_str(&v)
            }
            _ => {}
        }
    }
    if e.linux.is_empty() {
        bail!("the entry has no `linux` line");
    }
    Ok(e)
}

/// Paths in an entry are relative to the partition that holds /boot; a
/// `/boot` prefix (a sysroot with /boot on the root filesystem) is dropped.
fn strip_boot(p: &str) -> String {
    p.strip_prefix("/boot/")
        .map(|s| format!("/{s}"))
        .unwrap_or_else(|| p.to_string())
}

/// Every entry under `boot/loader/entries`, newest (highest version) first.
pub fn read_entries(boot: &Path) -> Result<Vec<Entry>> {
    read_entries_in(&boot.join("loader/entries"))
}

/// Every entry in the directory `dir` (`loader.N/entries`), newest first.
pub fn read_entries_in(dir: &Path) -> Result<Vec<Entry>> {
    let dir = dir.to_owned();
    let mut out = Vec::new();
    let mut names: Vec<_> = fs::read_dir(&dir)
        .with_context(|| {
            format!(
                "reading {} (did the deploy write a boot entry?)",
                dir.display()
            )
        })?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "conf"))
        .collect();
    names.sort();
    for p in names {
        let text = fs::read_to_string(&p)?;
        out.push(parse(&text).with_context(|| format!("parsing {}", p.display()))?);
    }
    if out.is_empty() {
        bail!("no boot entries in {}", dir.display());
    }
    out.sort_by(|a, b| {
        let va: u64 = a.version.parse().unwrap_or(0);
        let vb: u64 = b.version.parse().unwrap_or(0);
        vb.cmp(&va)
    });
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_an_ostree_entry() {
        let e = parse(
            "title Debian GNU/Linux 12 (bookworm) (ostree:0)\nversion 1\noptions root=LABEL=root rw ostree=/ostree/boot.1/debian/abc/0\nlinux /boot/ostree/debian-abc/vmlinuz-6.1.0\ninitrd /ostree/debian-abc/initramfs-6.1.0.img\n",
        )
        .unwrap();
        assert_eq!(e.title, "Debian GNU/Linux 12 (bookworm) (ostree:0)");
        assert_eq!(e.linux, "/ostree/debian-abc/vmlinuz-6.1.0");
        assert_eq!(e.initrd, vec!["/ostree/debian-abc/initramfs-6.1.0.img"]);
        assert!(e.options.contains("ostree=/ostree/boot.1/debian/abc/0"));
    }

    #[test]
    fn entry_without_kernel_is_an_error() {
        assert!(parse("title x\noptions a\n").is_err());
    }
}
