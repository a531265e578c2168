//! The rules themselves: one walk over the tree (modes, owners, setuid),
//! the files under `/etc` and the overlays for private keys, and the
//! account files.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use anyhow::{Context, Result};

use super::{Finding, Privileged, Tree};
use crate::fsutil;

/// Files larger than this are not read for key blocks.
const MAX_KEY_FILE: u64 = 1 << 20;

fn finding(rule: &str, path: &str, detail: impl Into<String>) -> Finding {
    Finding {
        rule: rule.into(),
        path: path.into(),
        detail: detail.into(),
    }
}

/// `rel` (relative to the root) as the host sees it.
fn host_path(t: &Tree, rel: &Path) -> String {
    let rel = rel.to_string_lossy();
    match rel.strip_prefix(t.etc) {
        Some(rest) if t.etc != "etc" && (rest.is_empty() || rest.starts_with('/')) => {
            format!("/etc{rest}")
        }
        _ => format!("/{rel}"),
    }
}

/// Every finding, and the setuid/setgid files.
pub fn check(t: &Tree) -> Result<(Vec<Finding>, Vec<Privileged>)> {
    let mut keys: BTreeMap<String, Finding> = BTreeMap::new();
    for o in t.overlays {
        fsutil::walk_sorted(o, &mut |p, md| {
            if md.is_file() {
                let rel = p.strip_prefix(o).unwrap_or(p);
                let path = format!("/{}", rel.display());
                if let Some(what) = private_key(p, md)? {
                    let detail = format!("{what}, shipped by the overlay {}: every host of this image would share it; let each host make its own at first boot", o.display());
                    keys.insert(path.clone(), finding("private-key", &path, detail));
                }
            }
            Ok(())
        })?;
    }
    let etc = t.root.join(t.etc);
    if etc.is_dir() {
        fsutil::walk_sorted(&etc, &mut |p, md| {
            let path = host_path(t, p.strip_prefix(t.root).unwrap_or(p));
            if md.is_file() && !keys.contains_key(&path) {
                if let Some(what) = private_key(p, md)? {
                    let detail = format!("{what} in the image: every host would share it; let each host make its own at first boot");
                    keys.insert(path.clone(), finding("private-key", &path, detail));
                }
            }
            Ok(())
        })?;
    }
    let mut all: Vec<Finding> = keys.into_values().collect();
    all.extend(machine_id(t, &etc));
    all.extend(passwords(t, &etc)?);
    let (modes, setuid) = walk(t, &etc)?;
    all.extend(modes);
    all.extend(shadow_modes(&etc)?);
    Ok((all, setuid))
}

/// What kind of private key `p` is, if it is one.
fn private_key(p: &Path, md: &fs::Metadata) -> Result<Option<String>> {
    let name = p.file_name().unwrap_or_default().to_string_lossy();
    if name.starts_with("ssh_host_") && name.ends_with("_key") {
        return Ok(Some("an SSH host key".into()));
    }
    if md.len() > MAX_KEY_FILE {
        return Ok(None);
    }
    let bytes = fs::read(p).with_context(|| format!("reading {}", p.display()))?;
    let text = String::from_utf8_lossy(&bytes);
    Ok(text
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("-----BEGIN ") && l.contains("PRIVATE KEY"))
        .map(|l| format!("a private key ({l})")))
}

/// A machine-id that is set.
fn machine_id(_t: &Tree, etc: &Path) -> Option<Finding> {
    let id = fs::read_to_string(etc.join("machine-id")).unwrap_or_default();
    let id = id.trim();
    (!id.is_empty() && id != "uninitialized").then(|| {
        finding("machine-id", "/etc/machine-id", format!("is set ({id}): every host of this image would have the same identity; leave it empty so that systemd makes one at first boot"))
    })
}

/// Password fields of `/etc/shadow` that are neither locked nor declared.
fn passwords(t: &Tree, etc: &Path) -> Result<Vec<Finding>> {
    let Ok(shadow) = fs::read_to_string(etc.join("shadow")) else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for line in shadow.lines() {
        let mut f = line.split(':');
        let (Some(user), Some(hash)) = (f.next(), f.next()) else {
            continue;
        };
        if hash.starts_with('!') || hash.starts_with('*') {
            continue;
        }
        if hash.is_empty() {
            out.push(finding("password-hash", "/etc/shadow", format!("{user} has an empty password: anyone may log in as {user} without one; lock it (`*`) or declare a password_hash in [[users]]")));
        } else if !t.declared_hashes.iter().any(|d| d == hash) {
            out.push(finding("password-hash", "/etc/shadow", format!("{user} has a password hash the manifest does not declare (an overlay or package set it); declare it as [[users]] password_hash or lock the account")));
        }
    }
    Ok(out)
}

/// IDs named in a passwd- or group-style file (third field).
fn ids(text: &str) -> BTreeSet<u32> {
    text.lines()
        .filter_map(|l| l.split(':').nth(2)?.parse().ok())
        .collect()
}

/// The IDs the image defines: (UIDs, GIDs); root's 0 always (the kernel's
/// own, whatever passwd says).
fn defined_ids(t: &Tree, etc: &Path) -> (BTreeSet<u32>, BTreeSet<u32>) {
    let read = |name: &str| {
        [etc.join(name), t.root.join("usr/lib").join(name)]
            .iter()
            .map(|p| fs::read_to_string(p).unwrap_or_default())
            .collect::<String>()
    };
    let (mut uids, mut gids) = (ids(&read("passwd")), ids(&read("group")));
    uids.insert(0);
    gids.insert(0);
    (uids, gids)
}

/// World-writable files and directories, unknown owners, setuid files.
fn walk(t: &Tree, etc: &Path) -> Result<(Vec<Finding>, Vec<Privileged>)> {
    let (uids, gids) = defined_ids(t, etc);
    let (mut out, mut setuid) = (Vec::new(), Vec::new());
    fsutil::walk_sorted(t.root, &mut |p, md| {
        let path = host_path(t, p.strip_prefix(t.root).unwrap_or(p));
        let mode = md.mode() & 0o7777;
        let writable = mode & 0o002 != 0;
        if md.is_file() && writable {
            out.push(finding(
                "world-writable",
                &path,
                format!("a file anyone may write (mode {mode:04o})"),
            ));
        } else if md.is_dir() && writable && mode & 0o1000 == 0 {
            out.push(finding("world-writable", &path, format!("a directory anyone may write, without the sticky bit (mode {mode:04o}): anyone may replace what others put there")));
        }
        if !uids.contains(&md.uid()) || !gids.contains(&md.gid()) {
            out.push(finding("unknown-owner", &path, format!("owned by {}:{}, which the image's passwd/group do not define (a later user with that ID would own it)", md.uid(), md.gid())));
        }
        if md.is_file() && mode & 0o6000 != 0 {
            setuid.push(Privileged {
                path,
                mode: format!("{mode:04o}"),
                uid: md.uid(),
                gid: md.gid(),
            });
        }
        Ok(())
    })?;
    Ok((out, setuid))
}

/// Modes and owners of `/etc/shadow` and `/etc/gshadow`.
fn shadow_modes(etc: &Path) -> Result<Vec<Finding>> {
    let group = fs::read_to_string(etc.join("group")).unwrap_or_default();
    let shadow_gid: Option<u32> = group
        .lines()
        .find(|l| l.starts_with("shadow:"))
        .and_then(|l| l.split(':').nth(2)?.parse().ok());
    let mut out = Vec::new();
    for name in ["shadow", "gshadow"] {
        let Ok(md) = fs::symlink_metadata(etc.join(name)) else {
            continue;
        };
        let mode = md.mode() & 0o7777;
        let group_ok = md.gid() == 0 || Some(md.gid()) == shadow_gid;
        if md.uid() != 0 || !group_ok || mode & 0o7027 != 0 || !md.is_file() {
            out.push(finding("shadow-mode", &format!("/etc/{name}"), format!("mode {mode:04o}, owner {}:{}: it must be a file of root's, group root or shadow, not group-writable and nothing for others (Debian: 0640 root:shadow, Fedora: 0000 root:root)", md.uid(), md.gid())));
        }
    }
    Ok(out)
}
